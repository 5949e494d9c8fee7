using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace ProxyBackup.OpenNebula;

/// <summary>
/// Polls until an asynchronous operation has visibly ended. A call's success only means "accepted"
/// (docs/opennebula.md, "Asynchronous operations"): the outcome is read from the documents afterwards. States that cannot turn
/// into the awaited one end the wait at once with OpenNebula's own error text.
/// </summary>
public sealed class OneWaiter(OneClient client, TimeSpan? firstPoll = null, TimeSpan? maxPoll = null, TimeProvider? time = null)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly TimeSpan _firstPoll = firstPoll ?? TimeSpan.FromMilliseconds(50);
    private readonly TimeSpan _maxPoll = maxPoll ?? TimeSpan.FromSeconds(2);

    /// <summary>Until the VM is settled (RUNNING, POWEROFF, SUSPENDED, ...). A *_FAILURE state or DONE fails the wait.</summary>
    public Task<VirtualMachine> VmSettledAsync(int vmId, TimeSpan timeout, CancellationToken ct = default) =>
        VmUntilAsync(vmId, "settled", vm => vm.Settlement == VmSettlement.Settled, timeout, ct);

    /// <summary>Until the VM is RUNNING (e.g. after instantiate, resume). A settled state other than RUNNING keeps the wait going.</summary>
    public Task<VirtualMachine> VmRunningAsync(int vmId, TimeSpan timeout, CancellationToken ct = default) =>
        VmUntilAsync(vmId, "RUNNING", vm => vm is { State: VmState.Active, LcmState: LcmState.Running }, timeout, ct);

    public Task<VirtualMachine> VmUntilAsync(int vmId, string awaited, Func<VirtualMachine, bool> done, TimeSpan timeout, CancellationToken ct = default) =>
        PollAsync($"VM {vmId} to be {awaited}", async token =>
        {
            var vm = await client.VmInfoAsync(vmId, token).ConfigureAwait(false);
            if (done(vm)) return (vm, true, vm.StateName);
            if (vm.Settlement == VmSettlement.Failed)
                throw new OneOperationFailedException($"VM {vmId} ({vm.Name}) is in {vm.StateName}{ErrorSuffix(vm.LastError)}; it needs an operator (onevm recover).");
            if (vm.Settlement == VmSettlement.Gone)
                throw new OneOperationFailedException($"VM {vmId} ({vm.Name}) is DONE (terminated).");
            return (vm, false, vm.StateName);
        }, timeout, ct);

    /// <summary>Until the image is READY. ERROR fails at once with the image's TEMPLATE/ERROR.</summary>
    public Task<OneImage> ImageReadyAsync(int imageId, TimeSpan timeout, CancellationToken ct = default) =>
        PollAsync($"image {imageId} to be READY", async token =>
        {
            var image = await client.ImageInfoAsync(imageId, token).ConfigureAwait(false);
            if (image.State == ImageState.Error)
                throw new OneOperationFailedException($"Image {imageId} ({image.Name}) went to ERROR{ErrorSuffix(image.Error)}.");
            if (image.State is ImageState.Delete)
                throw new OneOperationFailedException($"Image {imageId} ({image.Name}) is being deleted.");
            return (image, image.State == ImageState.Ready, image.StateName);
        }, timeout, ct);

    /// <summary>Until one.image.info says the image does not exist any more.</summary>
    public async Task ImageGoneAsync(int imageId, TimeSpan timeout, CancellationToken ct = default) =>
        await PollAsync($"image {imageId} to be deleted", async token =>
        {
            try
            {
                var image = await client.ImageInfoAsync(imageId, token).ConfigureAwait(false);
                if (image.State == ImageState.Error)
                    throw new OneOperationFailedException($"Deleting image {imageId} ({image.Name}) failed: it is in ERROR{ErrorSuffix(image.Error)}.");
                return (true, false, image.StateName);
            }
            catch (OneNotFoundException)
            {
                return (true, true, "gone");
            }
        }, timeout, ct).ConfigureAwait(false);

    private async Task<T> PollAsync<T>(string what, Func<CancellationToken, Task<(T Value, bool Done, string State)>> probe, TimeSpan timeout, CancellationToken ct)
    {
        var lastState = "unknown";
        var pipeline = new ResiliencePipelineBuilder<(T Value, bool Done, string State)> { TimeProvider = _time }
            .AddTimeout(timeout)
            .AddRetry(new RetryStrategyOptions<(T Value, bool Done, string State)>
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is null && !args.Outcome.Result.Done),
                MaxRetryAttempts = int.MaxValue,
                DelayGenerator = args => ValueTask.FromResult<TimeSpan?>(PollDelay(args.AttemptNumber)),
            })
            .Build();
        try
        {
            var result = await pipeline.ExecuteAsync(async token =>
            {
                using (await client.PollBudget.AcquireAsync(1, token).ConfigureAwait(false)) { }
                var r = await probe(token).ConfigureAwait(false);
                lastState = r.State;
                return r;
            }, ct).ConfigureAwait(false);
            return result.Value;
        }
        catch (TimeoutRejectedException)
        {
            throw new OneWaitTimeoutException($"Gave up waiting for {what} after {timeout.TotalSeconds:0} s; last state seen: {lastState}.");
        }
    }

    /// <summary>
    /// The pause before poll n+1: soon after the call, then a quarter longer each time up to the cap,
    /// so an operation is seen done within about a quarter of its own time (a 0.2 s hot-plug within
    /// 0.1 s, not at the next half second); ±10 % keeps many jobs' waits from polling in step.
    /// </summary>
    private TimeSpan PollDelay(int attempt)
    {
        var grown = _firstPoll.TotalMilliseconds * Math.Pow(1.25, Math.Min(attempt, 60));
        return TimeSpan.FromMilliseconds(Math.Min(grown, _maxPoll.TotalMilliseconds) * (0.9 + 0.2 * Random.Shared.NextDouble()));
    }

    private static string ErrorSuffix(string? error) => string.IsNullOrWhiteSpace(error) ? "" : $": {error.Trim()}";
}
