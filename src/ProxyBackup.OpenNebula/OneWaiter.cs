using Polly;
using Polly.Retry;
using Polly.Timeout;

namespace ProxyBackup.OpenNebula;

/// <summary>
/// Polls until an asynchronous operation has visibly ended. A call's success only means "accepted"
/// (docs/opennebula.md, "Asynchronous operations"): the outcome is read from the documents afterwards. States that cannot turn
/// into the awaited one end the wait at once with OpenNebula's own error text.
/// A poll follows the last one after <paramref name="lateness"/> of the time waited so far (at
/// least <paramref name="firstPoll"/>, at most <paramref name="maxPoll"/>): an operation is seen
/// done within that share of its own duration, and a long one costs few calls. A wait that names
/// its operation follows what that operation took lately on this front-end instead
/// (<see cref="OneClient.OperationTimes"/>).
/// </summary>
public sealed class OneWaiter(OneClient client, TimeSpan? firstPoll = null, TimeSpan? maxPoll = null, TimeProvider? time = null, double lateness = 0.2)
{
    private readonly TimeProvider _time = time ?? TimeProvider.System;
    private readonly TimeSpan _firstPoll = firstPoll ?? TimeSpan.FromMilliseconds(25);
    private readonly TimeSpan _maxPoll = maxPoll ?? TimeSpan.FromSeconds(2);

    /// <summary>Until the VM is settled (RUNNING, POWEROFF, SUSPENDED, ...). A *_FAILURE state or DONE fails the wait.</summary>
    public Task<VirtualMachine> VmSettledAsync(int vmId, TimeSpan timeout, CancellationToken ct = default, AwaitedOperation? operation = null) =>
        VmUntilAsync(vmId, "settled", vm => vm.Settlement == VmSettlement.Settled, timeout, ct, operation);

    /// <summary>Until the VM is RUNNING (e.g. after instantiate, resume). A settled state other than RUNNING keeps the wait going.</summary>
    public Task<VirtualMachine> VmRunningAsync(int vmId, TimeSpan timeout, CancellationToken ct = default) =>
        VmUntilAsync(vmId, "RUNNING", vm => vm is { State: VmState.Active, LcmState: LcmState.Running }, timeout, ct);

    public Task<VirtualMachine> VmUntilAsync(int vmId, string awaited, Func<VirtualMachine, bool> done, TimeSpan timeout, CancellationToken ct = default,
        AwaitedOperation? operation = null) =>
        PollAsync($"VM {vmId} to be {awaited}", async token =>
        {
            var vm = await client.VmInfoAsync(vmId, token).ConfigureAwait(false);
            if (done(vm)) return (vm, true, vm.StateName);
            if (vm.Settlement == VmSettlement.Failed)
                throw new OneOperationFailedException($"VM {vmId} ({vm.Name}) is in {vm.StateName}{ErrorSuffix(vm.LastError)}; it needs an operator (onevm recover).");
            if (vm.Settlement == VmSettlement.Gone)
                throw new OneOperationFailedException($"VM {vmId} ({vm.Name}) is DONE (terminated).");
            return (vm, false, vm.StateName);
        }, timeout, ct, operation);

    /// <summary>Until the image is READY. ERROR fails at once with the image's TEMPLATE/ERROR.</summary>
    public Task<OneImage> ImageReadyAsync(int imageId, TimeSpan timeout, CancellationToken ct = default, AwaitedOperation? operation = null) =>
        PollAsync($"image {imageId} to be READY", async token =>
        {
            var image = await client.ImageInfoAsync(imageId, token).ConfigureAwait(false);
            if (image.State == ImageState.Error)
                throw new OneOperationFailedException($"Image {imageId} ({image.Name}) went to ERROR{ErrorSuffix(image.Error)}.");
            if (image.State is ImageState.Delete)
                throw new OneOperationFailedException($"Image {imageId} ({image.Name}) is being deleted.");
            return (image, image.State == ImageState.Ready, image.StateName);
        }, timeout, ct, operation);

    /// <summary>Until one.image.info says the image does not exist any more.</summary>
    public async Task ImageGoneAsync(int imageId, TimeSpan timeout, CancellationToken ct = default, AwaitedOperation? operation = null) =>
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
        }, timeout, ct, operation).ConfigureAwait(false);

    private async Task<T> PollAsync<T>(string what, Func<CancellationToken, Task<(T Value, bool Done, string State)>> probe, TimeSpan timeout, CancellationToken ct,
        AwaitedOperation? operation)
    {
        var lastState = "unknown";
        var started = _time.GetTimestamp();
        // When the probes that saw the operation still under way, and then done, were sent.
        var probes = new ProbeTimes();
        var expected = operation is { } awaited ? client.OperationTimes.Expected(awaited) : null;
        var pipeline = new ResiliencePipelineBuilder<(T Value, bool Done, string State)> { TimeProvider = _time }
            .AddTimeout(timeout)
            .AddRetry(new RetryStrategyOptions<(T Value, bool Done, string State)>
            {
                ShouldHandle = args => ValueTask.FromResult(args.Outcome.Exception is null && !args.Outcome.Result.Done),
                MaxRetryAttempts = int.MaxValue,
                DelayGenerator = args => ValueTask.FromResult<TimeSpan?>(PollPause(_time.GetElapsedTime(started), expected, _firstPoll, _maxPoll, lateness, 0.9 + 0.2 * Random.Shared.NextDouble())),
            })
            .Build();
        try
        {
            var result = await pipeline.ExecuteAsync(async token =>
            {
                using (await client.PollBudget.AcquireAsync(1, token).ConfigureAwait(false)) { }
                var sent = _time.GetElapsedTime(started);
                var r = await probe(token).ConfigureAwait(false);
                lastState = r.State;
                probes.Saw(r.Done, sent);
                return r;
            }, ct).ConfigureAwait(false);
            // The operation ended between those two probes: the middle is what it took, within half
            // a pause, and neither the answers' round trips nor a long first pause (an operation
            // faster than lately) go into it, so the expected time follows the cloud down as well as up.
            if (operation is { } done) client.OperationTimes.Record(done, probes.Took);
            return result.Value;
        }
        catch (TimeoutRejectedException)
        {
            throw new OneWaitTimeoutException($"Gave up waiting for {what} after {timeout.TotalSeconds:0} s; last state seen: {lastState}.");
        }
    }

    /// <summary>
    /// The pause before the next poll. Without an expected time: <c>lateness</c> times the time
    /// waited so far, bounded, so that a 0.5 s snapshot is seen done within 0.1 s and a 10 minute
    /// copy costs a call every 2 s. With one (what the operation took lately): a pause to nine
    /// tenths of it (±1 %, within the bound), then polls a quarter of <c>lateness</c> of it apart until
    /// half again as long has passed, when the operation is slower than lately and the plain
    /// schedule takes over. ±10 % keeps many jobs' waits from polling in step.
    /// </summary>
    internal static TimeSpan PollPause(TimeSpan waited, TimeSpan? expected, TimeSpan firstPoll, TimeSpan maxPoll, double lateness, double jitter)
    {
        if (expected is { } e)
        {
            var near = e * (0.8 + 0.1 * jitter);
            if (waited + firstPoll < near) return near - waited < maxPoll ? near - waited : maxPoll * jitter;
            if (waited < e * 1.5) return Min(Max(e * lateness / 4, firstPoll), maxPoll) * jitter;
        }
        return Min(Max(waited * lateness, firstPoll), maxPoll) * jitter;
    }

    /// <summary>
    /// When the last probe that saw an operation under way and the first that saw it done were sent:
    /// what it took is the middle (the answers' round trips are not in it).
    /// </summary>
    internal struct ProbeTimes
    {
        private TimeSpan _underWay, _done;

        public void Saw(bool done, TimeSpan sent)
        {
            if (done) _done = sent;
            else _underWay = sent;
        }

        public readonly TimeSpan Took => (_underWay + _done) / 2;
    }

    private static TimeSpan Min(TimeSpan a, TimeSpan b) => a < b ? a : b;
    private static TimeSpan Max(TimeSpan a, TimeSpan b) => a > b ? a : b;

    private static string ErrorSuffix(string? error) => string.IsNullOrWhiteSpace(error) ? "" : $": {error.Trim()}";
}
