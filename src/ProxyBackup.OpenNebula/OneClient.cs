using System.Xml.Linq;
using Polly;
using Polly.Retry;
using System.Threading.RateLimiting;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula;

public sealed record OneClientOptions
{
    public required Uri Endpoint { get; init; }
    public required OneCredentials Credentials { get; init; }
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>
    /// The largest answer accepted. Decoding an answer costs about 4.5 times its size in memory
    /// (the body and the document's tree; scripts/bench-answer), so this bounds what an endpoint can
    /// make the appliance hold: 64 MiB, a pool of about ten thousand VMs with their full templates.
    /// </summary>
    public long MaxAnswerBytes { get; init; } = 64L << 20;
    public string? CaCertificateFile { get; init; }
    public string? PinnedCertificateSha256 { get; init; }

    /// <summary>Attempts after the first one, for the calls that may be repeated (see <see cref="OneClient"/>).</summary>
    public int Retries { get; init; } = 4;
    public TimeSpan RetryDelay { get; init; } = TimeSpan.FromMilliseconds(500);

    /// <summary>
    /// The state polls every wait of this client shares per second (docs/architecture.md, "What is
    /// serialised"): a night of many jobs polls oned no faster than this, whatever their number.
    /// </summary>
    public int MaxPollsPerSecond { get; init; } = 50;
}

/// <summary>
/// Typed calls to OpenNebula's XML-RPC API. Reads are retried on transport failures and on HA
/// refusals; calls that change something are retried only when the request certainly did not
/// reach oned (connection refused) or oned said it could not process it yet (HA election): a
/// create that timed out may have happened, and repeating it would create a second object.
/// </summary>
public sealed class OneClient : IDisposable
{
    private readonly XmlRpcClient _rpc;
    private readonly OneCredentials _credentials;
    private readonly SecretScrubber _scrubber;
    private readonly ResiliencePipeline _readPipeline;
    private readonly ResiliencePipeline _writePipeline;

    public OneClient(OneClientOptions options)
    {
        _credentials = options.Credentials;
        _scrubber = options.Credentials.Scrubber();
        _rpc = new XmlRpcClient(new XmlRpcClientOptions
        {
            Scrubber = _scrubber,
            Endpoint = options.Endpoint,
            Timeout = options.CallTimeout,
            MaxResponseBytes = options.MaxAnswerBytes,
            CaCertificateFile = options.CaCertificateFile,
            PinnedCertificateSha256 = options.PinnedCertificateSha256,
        });
        // Refilled in small steps (about every 20 ms, or one token at a time below 50 per second)
        // with a burst of a tenth of a second: a bucket refilled once a second lets the polls of a
        // busy night spend it in the first milliseconds and then holds every wait to the next second.
        var perPeriod = Math.Max(1, (int)Math.Ceiling(options.MaxPollsPerSecond * 0.02));
        var period = TimeSpan.FromSeconds((double)perPeriod / options.MaxPollsPerSecond);
        PollBudget = new TokenBucketRateLimiter(new TokenBucketRateLimiterOptions
        {
            TokenLimit = Math.Max(perPeriod, options.MaxPollsPerSecond / 10), TokensPerPeriod = perPeriod, ReplenishmentPeriod = period,
            QueueLimit = int.MaxValue, QueueProcessingOrder = QueueProcessingOrder.OldestFirst, AutoReplenishment = true,
        });
        // A reply that missed its deadline is not asked for again: the deadline is what an operator
        // gives a call, and repeating it would multiply that (a silent server would cost 5 deadlines).
        _readPipeline = Pipeline(options, e => e is XmlRpcTransportException { TimedOut: false } || e is OneException { IsTransient: true });
        _writePipeline = Pipeline(options, e => e is XmlRpcTransportException { RequestMayHaveBeenProcessed: false } || e is OneException { IsTransient: true });
    }

    public Uri Endpoint => _rpc.Endpoint;

    /// <summary>Taken by each state poll of every <see cref="OneWaiter"/> on this client.</summary>
    internal RateLimiter PollBudget { get; }

    /// <summary>What each operation took lately on this front-end, which the waits of every <see cref="OneWaiter"/> on this client follow.</summary>
    internal OperationTimes OperationTimes { get; } = new();
    public string User => _credentials.User;

    private static ResiliencePipeline Pipeline(OneClientOptions options, Func<Exception, bool> retryable) =>
        options.Retries <= 0
            ? ResiliencePipeline.Empty
            : new ResiliencePipelineBuilder().AddRetry(new RetryStrategyOptions
            {
                ShouldHandle = new PredicateBuilder().Handle<Exception>(retryable),
                MaxRetryAttempts = options.Retries,
                Delay = options.RetryDelay,
                BackoffType = DelayBackoffType.Exponential,
                UseJitter = true,
                MaxDelay = TimeSpan.FromSeconds(10),
            }).Build();

    // ---- the raw call ------------------------------------------------------------------------

    private async Task<object?> CallAsync(bool mayRepeat, string method, object?[] args, CancellationToken ct, bool answersDocument = false)
    {
        var pipeline = mayRepeat ? _readPipeline : _writePipeline;
        return await pipeline.ExecuteAsync(async token =>
        {
            object?[] parameters = [_credentials.Session, .. args];
            var reply = await _rpc.CallAsync(method, parameters, token, answersDocument ? DocumentReader(token) : null).ConfigureAwait(false);
            return Unwrap(method, reply);
        }, ct).ConfigureAwait(false);
    }

    /// <summary>
    /// oned's answer is [true, document, ...] or [false, message, ...]: the document is parsed as
    /// it arrives, under the call's deadline, never held as one string (a pool of thousands of VMs
    /// costs its tree, not its text twice over); a message is read whole.
    /// </summary>
    private static XmlRpcStringReader DocumentReader(CancellationToken ct) => (text, position) =>
        position is { Depth: 1, Earlier: [true] } ? OneXml.Load(text, ct) : text.ReadToEnd();

    private object? Unwrap(string method, object? reply)
    {
        if (reply is not IReadOnlyList<object?> { Count: >= 2 } array || array[0] is not bool ok)
            throw new OneProtocolException(_scrubber.Scrub($"{method}: expected an array [success, result, ...], got {XmlRpcTypes.Describe(reply)}."));
        if (ok) return array[1];
        // oned's own text, or an echo of the request from something that is not oned.
        var message = _scrubber.Scrub(array[1] as string ?? "(no message)");
        var code = array.Count > 2 && array[2] is int c ? c : (int)OneErrorCode.Internal;
        var objectId = array.Count > 3 && array[3] is int o ? o : -1;
        throw OneException.From(method, code, message, objectId);
    }

    private async Task<int> IntAsync(bool mayRepeat, string method, object?[] args, CancellationToken ct) =>
        await CallAsync(mayRepeat, method, args, ct).ConfigureAwait(false) switch
        {
            int i => i,
            long l when l is >= int.MinValue and <= int.MaxValue => (int)l,
            long l => throw new OneProtocolException($"{method}: the answer {l} is out of the range of an OpenNebula id."),
            var other => throw new OneProtocolException($"{method}: expected an integer result, got {XmlRpcTypes.Describe(other)}."),
        };

    private async Task<string> StringAsync(string method, object?[] args, CancellationToken ct) =>
        await CallAsync(true, method, args, ct).ConfigureAwait(false) as string
            ?? throw new OneProtocolException($"{method}: expected a string result.");

    private async Task<XElement> DocumentAsync(string method, object?[] args, CancellationToken ct) =>
        await CallAsync(true, method, args, ct, answersDocument: true).ConfigureAwait(false) as XElement
            ?? throw new OneProtocolException($"{method}: expected an XML document as the result.");

    // ---- system and identity -----------------------------------------------------------------

    public Task<string> SystemVersionAsync(CancellationToken ct = default) => StringAsync("one.system.version", [], ct);

    public Task<XElement> SystemConfigAsync(CancellationToken ct = default) => DocumentAsync("one.system.config", [], ct);

    /// <summary>Creates a login token (validity -1: no expiry, 0: revoke). Not repeated: a repeat would mint another token.</summary>
    public async Task<string> UserLoginAsync(string user, string token, int validSeconds, int effectiveGroup = -1, CancellationToken ct = default) =>
        await CallAsync(false, "one.user.login", [user, token, validSeconds, effectiveGroup], ct).ConfigureAwait(false) as string
            ?? throw new OneProtocolException("one.user.login: expected a token string.");

    public async Task<OneUser> UserInfoAsync(int id = -1, CancellationToken ct = default) =>
        OneUser.Parse(await DocumentAsync("one.user.info", [id], ct).ConfigureAwait(false));

    // ---- VMs ----------------------------------------------------------------------------------

    public async Task<VirtualMachine> VmInfoAsync(int id, CancellationToken ct = default) =>
        VirtualMachine.Parse(await DocumentAsync("one.vm.info", [id], ct).ConfigureAwait(false));

    /// <summary>Short bodies (no TARGET, SNAPSHOTS, custom user attributes). filter -2: all the caller may see; state -1: all but DONE.</summary>
    public async Task<IReadOnlyList<VirtualMachine>> VmPoolAsync(int filter = -2, int start = -1, int end = -1, int state = -1, CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.vmpool.info", [filter, start, end, state], ct).ConfigureAwait(false)).Elements("VM").Select(VirtualMachine.Parse)];

    /// <summary>Full bodies: what policy selection by template attribute needs.</summary>
    public async Task<IReadOnlyList<VirtualMachine>> VmPoolExtendedAsync(int filter = -2, int start = -1, int end = -1, int state = -1, CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.vmpool.infoextended", [filter, start, end, state], ct).ConfigureAwait(false)).Elements("VM").Select(VirtualMachine.Parse)];

    public async Task<IReadOnlyList<VirtualMachine>> VmPoolInfoSetAsync(IEnumerable<int> ids, bool extended, CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.vmpool.infoset", [string.Join(',', ids), extended], ct).ConfigureAwait(false)).Elements("VM").Select(VirtualMachine.Parse)];

    /// <summary>Returns the new snapshot ID. The VM passes through DISK_SNAPSHOT*: wait for it to settle.</summary>
    public Task<int> VmDiskSnapshotCreateAsync(int vmId, int diskId, string name, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.disksnapshotcreate", [vmId, diskId, name], ct);

    /// <summary>POWEROFF only on 6.8+.</summary>
    public Task<int> VmDiskSnapshotRevertAsync(int vmId, int diskId, int snapshotId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.disksnapshotrevert", [vmId, diskId, snapshotId], ct);

    public Task<int> VmDiskSnapshotDeleteAsync(int vmId, int diskId, int snapshotId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.disksnapshotdelete", [vmId, diskId, snapshotId], ct);

    /// <summary>Renames a disk snapshot; synchronous, allowed in any state (docs/opennebula.md, "State sequences").</summary>
    public Task<int> VmDiskSnapshotRenameAsync(int vmId, int diskId, int snapshotId, string name, CancellationToken ct = default) =>
        IntAsync(true, "one.vm.disksnapshotrename", [vmId, diskId, snapshotId, name], ct);

    /// <summary>Saves a disk (snapshotId -1) or one of its snapshots as a new image; returns the image ID. imageType "" keeps the source type.</summary>
    public Task<int> VmDiskSaveAsAsync(int vmId, int diskId, string imageName, string imageType, int snapshotId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.disksaveas", [vmId, diskId, imageName, imageType, snapshotId], ct);

    /// <summary>Hot-plugs one DISK; returns the VM ID (find the new disk by IMAGE_ID once the VM is RUNNING again).</summary>
    public Task<int> VmAttachAsync(int vmId, OneTemplate disk, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.attach", [vmId, disk.ToString()], ct);

    public Task<int> VmDetachAsync(int vmId, int diskId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.detach", [vmId, diskId], ct);

    /// <summary>poweroff, poweroff-hard, suspend, resume, terminate, terminate-hard, ... (action first, as oned wants it).</summary>
    public Task<int> VmActionAsync(string action, int vmId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.action", [action, vmId], ct);

    public Task<int> VmLockAsync(int vmId, int level, bool test = false, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.lock", [vmId, level, test], ct);

    public Task<int> VmUnlockAsync(int vmId, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.unlock", [vmId], ct);

    /// <summary>Replaces (merge=false) or merges the USER_TEMPLATE.</summary>
    public Task<int> VmUpdateAsync(int vmId, OneTemplate template, bool merge, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.update", [vmId, template.ToString(), merge ? 1 : 0], ct);

    public Task<int> VmAllocateAsync(OneTemplate template, bool hold = false, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.allocate", [template.ToString(), hold], ct);

    public Task<int> VmDeployAsync(int vmId, int hostId, bool enforce = false, int systemDatastoreId = -1, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.deploy", [vmId, hostId, enforce, systemDatastoreId], ct);

    public Task<int> VmRecoverAsync(int vmId, int operation, CancellationToken ct = default) =>
        IntAsync(false, "one.vm.recover", [vmId, operation], ct);

    // ---- images -------------------------------------------------------------------------------

    public Task<int> ImageAllocateAsync(OneTemplate template, int datastoreId, CancellationToken ct = default) =>
        IntAsync(false, "one.image.allocate", [template.ToString(), datastoreId], ct);

    public async Task<OneImage> ImageInfoAsync(int id, CancellationToken ct = default) =>
        OneImage.Parse(await DocumentAsync("one.image.info", [id], ct).ConfigureAwait(false));

    public Task<int> ImageDeleteAsync(int id, bool force = false, CancellationToken ct = default) =>
        IntAsync(false, "one.image.delete", [id, force], ct);

    public Task<int> ImagePersistentAsync(int id, bool persistent, CancellationToken ct = default) =>
        IntAsync(false, "one.image.persistent", [id, persistent], ct);

    public Task<int> ImageUpdateAsync(int id, OneTemplate template, bool merge, CancellationToken ct = default) =>
        IntAsync(false, "one.image.update", [id, template.ToString(), merge ? 1 : 0], ct);

    public async Task<IReadOnlyList<OneImage>> ImagePoolAsync(int filter = -2, int start = -1, int end = -1, CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.imagepool.info", [filter, start, end], ct).ConfigureAwait(false)).Elements("IMAGE").Select(OneImage.Parse)];

    // ---- VM templates -------------------------------------------------------------------------

    public Task<int> TemplateAllocateAsync(OneTemplate template, CancellationToken ct = default) =>
        IntAsync(false, "one.template.allocate", [template.ToString()], ct);

    public async Task<OneVmTemplate> TemplateInfoAsync(int id, CancellationToken ct = default) =>
        OneVmTemplate.Parse(await DocumentAsync("one.template.info", [id], ct).ConfigureAwait(false));

    /// <summary>hold and extra template travel together (oned reads them as a pair).</summary>
    public Task<int> TemplateInstantiateAsync(int templateId, string vmName, bool hold, OneTemplate? extra, bool persistent = false, CancellationToken ct = default) =>
        IntAsync(false, "one.template.instantiate", [templateId, vmName, hold, extra?.ToString() ?? "", persistent], ct);

    /// <summary>Never recursive after a restore: that would delete the restored images.</summary>
    /// <summary>one.vm.rename, one.image.rename, one.template.rename.</summary>
    public Task<int> RenameAsync(OneObject kind, int id, string name, CancellationToken ct = default) =>
        IntAsync(true, kind switch { OneObject.Vm => "one.vm.rename", OneObject.Image => "one.image.rename", _ => "one.template.rename" }, [id, name], ct);

    /// <summary>one.vm.chown, one.image.chown, one.template.chown: a new owner and group (-1 keeps one); docs/opennebula.md, "Ownership".</summary>
    public Task<int> ChownAsync(OneObject kind, int id, int uid, int gid, CancellationToken ct = default) =>
        IntAsync(true, kind switch { OneObject.Vm => "one.vm.chown", OneObject.Image => "one.image.chown", _ => "one.template.chown" }, [id, uid, gid], ct);

    public Task<int> TemplateDeleteAsync(int templateId, bool recursive = false, CancellationToken ct = default) =>
        IntAsync(false, "one.template.delete", [templateId, recursive], ct);

    public async Task<IReadOnlyList<OneVmTemplate>> TemplatePoolAsync(int filter = -2, int start = -1, int end = -1, CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.templatepool.info", [filter, start, end], ct).ConfigureAwait(false)).Elements("VMTEMPLATE").Select(OneVmTemplate.Parse)];

    // ---- datastores and hosts -----------------------------------------------------------------

    public async Task<OneDatastore> DatastoreInfoAsync(int id, CancellationToken ct = default) =>
        OneDatastore.Parse(await DocumentAsync("one.datastore.info", [id], ct).ConfigureAwait(false));

    public async Task<IReadOnlyList<OneDatastore>> DatastorePoolAsync(CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.datastorepool.info", [], ct).ConfigureAwait(false)).Elements("DATASTORE").Select(OneDatastore.Parse)];

    public async Task<OneHost> HostInfoAsync(int id, CancellationToken ct = default) =>
        OneHost.Parse(await DocumentAsync("one.host.info", [id], ct).ConfigureAwait(false));

    public async Task<IReadOnlyList<OneHost>> HostPoolAsync(CancellationToken ct = default) =>
        [.. (await DocumentAsync("one.hostpool.info", [], ct).ConfigureAwait(false)).Elements("HOST").Select(OneHost.Parse)];

    public void Dispose()
    {
        PollBudget.Dispose();
        _rpc.Dispose();
    }
}

/// <summary>The kinds of object whose owner the appliance may change.</summary>
public enum OneObject { Vm, Image, Template }
