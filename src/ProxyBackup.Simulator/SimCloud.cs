using System.Globalization;
using System.Text.Json;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>How an accepted asynchronous operation ends (fault injection decides; normally it succeeds).</summary>
public enum OpOutcome { Succeed, FailAsync, Stuck }

/// <summary>The simulator's asynchronous operations, as a test names them to hold some of them (<see cref="SimCloud.HoldTransientStates"/>).</summary>
public enum SimOperation { SnapshotCreate, SnapshotRevert, SnapshotDelete, SaveAs, Attach, Detach, ImageAllocate, ImageDelete, VmAction, Terminate }

public sealed record SimOptions
{
    public required string DataDirectory { get; init; }

    /// <summary>How long an operation stays in its transient state (snapshot, save-as, hot-plug, boot, ...).</summary>
    public TimeSpan OperationTime { get; init; } = TimeSpan.FromMilliseconds(300);

    /// <summary>Times of their own for some operations; the others take <see cref="OperationTime"/>.</summary>
    public IReadOnlyDictionary<SimOperation, TimeSpan> OperationTimes { get; init; } = new Dictionary<SimOperation, TimeSpan>();

    public TimeSpan TimeOf(SimOperation operation) => OperationTimes.TryGetValue(operation, out var time) ? time : OperationTime;

    /// <summary>
    /// What a real oned 6.10.5 whose drivers move real bytes took for a small VM (a 320 MiB two-disk
    /// VM; docs/opennebula.md, "Asynchronous operations"): the cloud-side floor a backup is measured against.
    /// </summary>
    public static readonly IReadOnlyDictionary<SimOperation, TimeSpan> MeasuredOnedTimes = new Dictionary<SimOperation, TimeSpan>
    {
        [SimOperation.SnapshotCreate] = TimeSpan.FromMilliseconds(500),
        [SimOperation.SaveAs] = TimeSpan.FromMilliseconds(1100),
        [SimOperation.Attach] = TimeSpan.FromMilliseconds(200),
        [SimOperation.Detach] = TimeSpan.FromMilliseconds(200),
        [SimOperation.ImageDelete] = TimeSpan.FromMilliseconds(100),
        [SimOperation.SnapshotDelete] = TimeSpan.FromMilliseconds(100),
        [SimOperation.ImageAllocate] = TimeSpan.FromMilliseconds(300),
    };

    public SimDeviceMode DeviceMode { get; init; } = SimDeviceMode.Auto;

    /// <summary>The proxy VM is the QEMU process with this QMP socket: its disks are hot-plugged into it.</summary>
    public string? ProxyQmpSocket { get; init; }

    /// <summary>How long a hot-unplug waits for the guest to release the device before the detach fails.</summary>
    public TimeSpan UnplugTimeout { get; init; } = TimeSpan.FromSeconds(30);
}

/// <summary>
/// The simulated front-end: objects, their state machines and their data files. Every public
/// method takes the one lock, validates like oned, changes state, persists, and schedules the end
/// of asynchronous operations, as the drivers' callbacks do in oned.
/// </summary>
public sealed partial class SimCloud : IDisposable
{
    public const string Version = "6.10.5";
    private const long MiB = 1 << 20;

    private readonly object _gate = new();
    private readonly SimState _s;
    private readonly CancellationTokenSource _stop = new();
    private readonly string _statePath;

    public SimCloud(SimOptions options)
    {
        Options = options;
        Directory.CreateDirectory(options.DataDirectory);
        _statePath = Path.Combine(options.DataDirectory, "state.json");
        ProxyDisks = options.ProxyQmpSocket is { } qmp
            ? new QmpDiskBus(qmp, options.UnplugTimeout)
            : new SimDevices(Path.Combine(options.DataDirectory, "devices"), options.DeviceMode);
        if (File.Exists(_statePath))
        {
            _s = JsonSerializer.Deserialize<SimState>(File.ReadAllText(_statePath)) ?? throw new InvalidDataException($"{_statePath} is empty.");
            RecoverAfterRestart();
        }
        else
        {
            _s = new SimState();
            _s.Users.Add(new SimUser { Id = 0, Name = "oneadmin", Password = "" });
        }
    }

    public SimOptions Options { get; }
    public IProxyDiskBus ProxyDisks { get; }

    /// <summary>The devices directory of the default world (tests and the demo read the proxy's disks there).</summary>
    public SimDevices Devices => ProxyDisks as SimDevices
        ?? throw new InvalidOperationException("The proxy's disks are hot-plugged into QEMU: there is no devices directory.");
    public bool IsEmpty => _s.Vms.Count == 0 && _s.Images.Count == 0;

    private static long Now => DateTimeOffset.UtcNow.ToUnixTimeSeconds();

    // ---- persistence ------------------------------------------------------------------------

    private void Save()
    {
        var tmp = _statePath + ".tmp";
        using (var f = new FileStream(tmp, FileMode.Create, FileAccess.Write))
        {
            // No fsync: a killed simulator's state survives in the page cache (what the restart
            // tests need), and every call waits for this save under the lock, as no oned does.
            JsonSerializer.Serialize(f, _s);
        }
        File.Move(tmp, _statePath, overwrite: true);
    }

    /// <summary>
    /// Operations cut by a restart do not complete: a VM in a transient state goes back to the
    /// state it came from (the driver never called back), half-copied images go to ERROR, and the
    /// proxy's attached disks are exposed again.
    /// </summary>
    private void RecoverAfterRestart()
    {
        foreach (var vm in _s.Vms.Where(v => OneStateNames.Settlement(v.State, v.Lcm) == VmSettlement.Transient))
        {
            foreach (var d in vm.Disks.Where(d => d.Element("ATTACH") is not null).ToList())
            {
                if (vm.Devices.ContainsKey(DiskId(d))) d.Element("ATTACH")!.Remove();
                else { ReleaseImage(vm, d); d.Remove(); }
            }
            foreach (var d in vm.Disks) ClearSaveAsFlags(d);
            if (vm.State == VmState.Active && vm.Lcm is LcmState.Prolog or LcmState.Boot) { vm.Lcm = LcmState.Running; continue; }
            (vm.State, vm.Lcm) = vm.PrevState == VmState.Active && vm.PrevLcm != LcmState.Running
                ? (VmState.Active, LcmState.Running) : (vm.PrevState, vm.PrevLcm);
        }
        foreach (var i in _s.Images.Where(i => i.State is ImageState.Locked or ImageState.LockedUsed or ImageState.LockedUsedPers))
        {
            i.State = ImageState.Error;
            i.Template["ERROR"] = "Operation interrupted by a restart of the front-end";
        }
        foreach (var i in _s.Images.Where(i => i.State == ImageState.Delete).ToList()) DropImage(i);
        foreach (var vm in _s.Vms)
            foreach (var dev in vm.Devices.Values) ProxyDisks.Reattach(dev);
        Save();
    }

    // ---- lookups ----------------------------------------------------------------------------

    public string UserName(int uid) => _s.Users.FirstOrDefault(u => u.Id == uid)?.Name ?? "oneadmin";
    public SimDatastore? Datastore(int id) => _s.Datastores.FirstOrDefault(d => d.Id == id);
    /// <summary>
    /// one.datastore.update, merge or replace: the simulator models ALLOW_ORPHANS of a datastore's
    /// template (docs/opennebula.md, "Snapshot delete rules") and refuses what it does not model.
    /// </summary>
    public int DatastoreUpdate(int id, string templateText, int type)
    {
        if (type is not (0 or 1)) throw new SimFailure(OneErrorCode.XmlRpcApi, "Wrong update type.", id);
        lock (_gate)
        {
            var ds = Datastore(id) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting datastore [{id}].", id);
            System.Xml.Linq.XElement t;
            try { t = TemplateParser.Parse(templateText); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message, id); }
            foreach (var e in t.Elements())
            {
                if (e.Name.LocalName != "ALLOW_ORPHANS")
                    throw new SimFailure(OneErrorCode.Internal, $"The simulator does not model datastore attribute {e.Name.LocalName}.", id);
                if (e.Value is not ("NO" or "YES" or "MIXED" or "FORMAT"))
                    throw new SimFailure(OneErrorCode.Internal, $"Wrong ALLOW_ORPHANS value: {e.Value}.", id);
                ds.AllowOrphans = e.Value;
            }
            Save();
            return id;
        }
    }

    public IEnumerable<int> ImagesIn(int dsId) => _s.Images.Where(i => i.DatastoreId == dsId).Select(i => i.Id);
    public IEnumerable<int> VmsOnHost(int hostId) =>
        _s.Vms.Where(v => v.State != VmState.Done && v.History.LastOrDefault()?.HostId == hostId).Select(v => v.Id);

    public long UsedMb(SimDatastore d) => d.Type == DatastoreType.System
        ? _s.Vms.Where(v => v.State != VmState.Done && v.History.LastOrDefault()?.SystemDatastoreId == d.Id).Sum(v => v.Disks.Where(x => !Yes(x, "PERSISTENT")).Sum(x => LongAttr(x, "SIZE")))
        : _s.Images.Where(i => i.DatastoreId == d.Id).Sum(i => i.SizeMb);

    public string ImageSource(SimImage i) => ImageFile(i.Id);

    public string AllowOrphansOf(SimVm vm, int diskId)
    {
        var disk = vm.Disk(diskId);
        var mode = disk?.Element("DATASTORE_ID") is { } ds ? Datastore(int.Parse(ds.Value, CultureInfo.InvariantCulture))?.AllowOrphans ?? "NO" : "NO";
        if (mode == "FORMAT") mode = string.Equals(disk?.Element("FORMAT")?.Value, "qcow2", StringComparison.OrdinalIgnoreCase) ? "NO" : "YES";
        return mode;
    }

    /// <summary>A VM by id; DONE VMs stay readable, as in oned, and their state refuses every operation.</summary>
    private SimVm VmOrThrow(int id) =>
        _s.Vms.FirstOrDefault(v => v.Id == id)
        ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting virtual machine [{id}].", id);

    private SimImage ImageOrThrow(int id) =>
        _s.Images.FirstOrDefault(i => i.Id == id) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting image [{id}].", id);

    private SimImage? ImageOf(XElement disk) =>
        disk.Element("IMAGE_ID") is { } e ? _s.Images.FirstOrDefault(i => i.Id == int.Parse(e.Value, CultureInfo.InvariantCulture)) : null;

    private static int DiskId(XElement disk) => int.Parse(disk.Element("DISK_ID")!.Value, CultureInfo.InvariantCulture);
    private static bool Yes(XElement e, string name) => string.Equals(e.Element(name)?.Value, "YES", StringComparison.OrdinalIgnoreCase);
    private static long LongAttr(XElement e, string name) => long.TryParse(e.Element(name)?.Value, CultureInfo.InvariantCulture, out var v) ? v : 0;

    private static bool IsProxy(SimVm vm) => string.Equals(vm.UserTemplate.Element("PROXY")?.Value, "YES", StringComparison.OrdinalIgnoreCase);

    // ---- files ------------------------------------------------------------------------------

    private string ImageFile(int imageId) => Path.Combine(Options.DataDirectory, "images", $"img-{imageId}.raw");
    private string VmDir(int vmId) => Path.Combine(Options.DataDirectory, "vms", vmId.ToString(CultureInfo.InvariantCulture));
    private string SnapshotFile(int vmId, int diskId, int snapId) => Path.Combine(VmDir(vmId), $"disk.{diskId}.snap.{snapId}.raw");

    /// <summary>The file holding what the VM sees on that disk: the image itself when persistent, else the VM's clone.</summary>
    public string DiskFile(SimVm vm, XElement disk) =>
        Yes(disk, "PERSISTENT") && ImageOf(disk) is { } img ? ImageFile(img.Id) : Path.Combine(VmDir(vm.Id), $"disk.{DiskId(disk)}.raw");

    // ---- state changes ----------------------------------------------------------------------

    private static void Enter(SimVm vm, LcmState transient)
    {
        vm.PrevState = vm.State;
        vm.PrevLcm = vm.Lcm;
        vm.State = VmState.Active;
        vm.Lcm = transient;
    }

    /// <summary>Back to the state the operation started from; PREV_* then names the transient state, as in oned.</summary>
    private static void Return(SimVm vm)
    {
        var (state, lcm) = (vm.State, vm.Lcm);
        (vm.State, vm.Lcm) = (vm.PrevState, vm.PrevLcm);
        (vm.PrevState, vm.PrevLcm) = (state, lcm);
    }

    /// <summary>USER_TEMPLATE/ERROR as the drivers leave it: timestamped, cut at 100 characters.</summary>
    private static void SetError(SimVm vm, string message)
    {
        var text = $"{DateTime.UtcNow:ddd MMM d HH:mm:ss yyyy}: {message}";
        if (text.Length > 100) text = text[..100];
        vm.UserTemplate.Elements("ERROR").Remove();
        vm.UserTemplate.Add(new XElement("ERROR", text));
    }

    private TaskCompletionSource _released = CompletedRelease();
    private IReadOnlySet<SimOperation>? _heldOnly;
    private int _held;

    /// <summary>How many operations are waiting in their transient state for a hold's release.</summary>
    public int HeldOperations => Volatile.Read(ref _held);

    private static TaskCompletionSource CompletedRelease()
    {
        var released = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        released.SetResult();
        return released;
    }

    /// <summary>
    /// Keeps every asynchronous operation started from now on (or only those of the kinds given)
    /// in its transient state (DISK_SNAPSHOT, HOTPLUG, image LOCKED ...) until the returned handle
    /// is disposed, so that a test sees that state for sure instead of racing the operation time.
    /// </summary>
    public IDisposable HoldTransientStates(params SimOperation[] only)
    {
        var held = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        lock (_gate) (_released, _heldOnly) = (held, only.Length == 0 ? null : only.ToHashSet());
        return new Release(() =>
        {
            lock (_gate) (_released, _heldOnly) = (CompletedRelease(), null);
            held.TrySetResult();
        });
    }

    private sealed class Release(Action release) : IDisposable
    {
        public void Dispose() => release();
    }

    /// <summary>Operations a "stuck" fault holds in their transient state: their ends, for <see cref="EndStuckOperations"/>.</summary>
    private readonly List<(Action OnSuccess, Action OnFailure)> _stuck = [];

    /// <summary>
    /// Ends every operation a "stuck" fault holds, as a driver that finally gives up does (its
    /// failure), or as an operator's 'onevm recover --success' does. Returns how many ended.
    /// </summary>
    public int EndStuckOperations(bool succeed = false)
    {
        lock (_gate)
        {
            foreach (var (onSuccess, onFailure) in _stuck)
                if (succeed) onSuccess(); else onFailure();
            var ended = _stuck.Count;
            _stuck.Clear();
            Save();
            return ended;
        }
    }

    /// <summary>Runs the end of an operation after the configured time (and any hold), under the lock, then persists.</summary>
    private void Later(SimOperation operation, OpOutcome outcome, Action onSuccess, Action onFailure, Action? slowWork = null)
    {
        if (outcome == OpOutcome.Stuck)
        {
            lock (_gate) _stuck.Add((onSuccess, onFailure));
            return;
        }
        Task released;
        lock (_gate) released = _heldOnly is null || _heldOnly.Contains(operation) ? _released.Task : Task.CompletedTask;
        _ = Task.Run(async () =>
        {
            try
            {
                // The data moves within the operation's time, as oned's measured times include
                // their copies: the operation takes the longer of the two, not their sum.
                var copy = outcome == OpOutcome.Succeed && slowWork is not null ? Task.Run(slowWork) : null;
                await Task.Delay(Options.TimeOf(operation), _stop.Token).ConfigureAwait(false);
                if (!released.IsCompleted)
                {
                    Interlocked.Increment(ref _held);
                    try { await released.WaitAsync(_stop.Token).ConfigureAwait(false); }
                    finally { Interlocked.Decrement(ref _held); }
                }
                var ok = outcome == OpOutcome.Succeed;
                if (copy is not null)
                {
                    try { await copy.ConfigureAwait(false); }
                    catch (IOException) { ok = false; }
                }
                lock (_gate)
                {
                    if (_stop.IsCancellationRequested) return;
                    if (ok) onSuccess(); else onFailure();
                    Save();
                }
            }
            catch (OperationCanceledException) { }
        });
    }

    public void Dispose()
    {
        lock (_gate)
        {
            _stop.Cancel();
            foreach (var vm in _s.Vms)
                foreach (var dev in vm.Devices.Values) ProxyDisks.Suspend(dev);
        }
        _stop.Dispose();
    }
}
