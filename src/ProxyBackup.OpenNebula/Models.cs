using System.Xml.Linq;

namespace ProxyBackup.OpenNebula;

/// <summary>A VM as <c>one.vm.info</c> (full) or a pool listing (short body) describes it. <see cref="Xml"/> keeps everything.</summary>
public sealed class VirtualMachine
{
    public required int Id { get; init; }
    public required string Name { get; init; }
    public int Uid { get; init; }
    public int Gid { get; init; }
    public string UserName { get; init; } = "";
    public string GroupName { get; init; } = "";
    public required VmState State { get; init; }
    public required LcmState LcmState { get; init; }
    public IReadOnlyList<VmDisk> Disks { get; init; } = [];
    public IReadOnlyList<VmNic> Nics { get; init; } = [];
    public IReadOnlyList<DiskSnapshotSet> Snapshots { get; init; } = [];
    public VmHistory? CurrentHistory { get; init; }

    /// <summary>BACKUPS/BACKUP_CONFIG/MODE: INCREMENT means native backups own the disks (no disk snapshots).</summary>
    public string? BackupMode { get; init; }

    /// <summary>Lock level (1 USE, 2 MANAGE, 3 ADMIN), 0 when unlocked.</summary>
    public int LockLevel { get; init; }

    public required XElement Template { get; init; }
    public required XElement UserTemplate { get; init; }
    public required XElement Xml { get; init; }

    public VmSettlement Settlement => OneStateNames.Settlement(State, LcmState);

    /// <summary>Whether PREV_LCM_STATE names this state: tells "back to RUNNING after a failed operation" from "never left it".</summary>
    public bool PrevLcmIs(LcmState lcm) => Xml.Int("PREV_LCM_STATE") == (int)lcm;
    public string StateName => OneStateNames.Describe(State, LcmState);

    /// <summary>USER_TEMPLATE/ERROR: the last driver error; never cleared by a later success, so compare before and after.</summary>
    public string? LastError => UserTemplate.Text("ERROR");

    /// <summary>Why the scheduler has not deployed a PENDING VM yet (USER_TEMPLATE/SCHED_MESSAGE), if it said.</summary>
    public string? SchedulerMessage => UserTemplate.Text("SCHED_MESSAGE");

    public IReadOnlyList<string> Labels =>
        UserTemplate.Text("LABELS")?.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries) ?? [];

    public VmDisk? Disk(int diskId) => Disks.FirstOrDefault(d => d.DiskId == diskId);

    public IReadOnlyList<DiskSnapshot> SnapshotsOf(int diskId) =>
        Snapshots.FirstOrDefault(s => s.DiskId == diskId)?.Snapshots ?? [];

    public static VirtualMachine Parse(XElement vm)
    {
        if (vm.Name.LocalName != "VM") throw new OneProtocolException($"Expected <VM>, got <{vm.Name.LocalName}>.");
        var template = vm.Element("TEMPLATE") ?? new XElement("TEMPLATE");
        var history = vm.Element("HISTORY_RECORDS")?.Elements("HISTORY").LastOrDefault();
        return new VirtualMachine
        {
            Id = vm.Int("ID"),
            Name = vm.Str("NAME"),
            Uid = vm.Int("UID"),
            Gid = vm.Int("GID"),
            UserName = vm.Str("UNAME"),
            GroupName = vm.Str("GNAME"),
            State = (VmState)vm.Int("STATE", 0),
            LcmState = (LcmState)vm.Int("LCM_STATE", 0),
            Disks = [.. template.Elements("DISK").Select(VmDisk.Parse)],
            Nics = [.. template.Elements("NIC").Select(VmNic.Parse)],
            Snapshots = [.. vm.Elements("SNAPSHOTS").Select(DiskSnapshotSet.Parse)],
            CurrentHistory = history is null ? null : VmHistory.Parse(history),
            BackupMode = vm.Element("BACKUPS")?.Element("BACKUP_CONFIG")?.Text("MODE"),
            LockLevel = vm.Element("LOCK")?.Int("LOCKED", 0) ?? 0,
            Template = template,
            UserTemplate = vm.Element("USER_TEMPLATE") ?? new XElement("USER_TEMPLATE"),
            Xml = vm,
        };
    }
}

public sealed record VmDisk
{
    public required int DiskId { get; init; }

    /// <summary>Null for volatile disks (TYPE fs/swap), which cannot be snapshotted nor saved.</summary>
    public int? ImageId { get; init; }
    public string? Image { get; init; }
    public long SizeMb { get; init; }
    public string? Target { get; init; }
    public string? DevPrefix { get; init; }
    public int? DatastoreId { get; init; }
    public string? Type { get; init; }
    public string? Format { get; init; }
    public bool IsClone { get; init; }
    public bool Persistent { get; init; }
    public bool ReadOnly { get; init; }
    public string? TmMad { get; init; }
    public string? Serial { get; init; }
    public required XElement Xml { get; init; }

    public bool IsVolatile => ImageId is null;
    public bool IsCdrom => ReadOnly || string.Equals(Type, "CDROM", StringComparison.OrdinalIgnoreCase);

    public static VmDisk Parse(XElement d) => new()
    {
        DiskId = d.Int("DISK_ID"),
        ImageId = d.OptInt("IMAGE_ID"),
        Image = d.Text("IMAGE"),
        SizeMb = d.Long("SIZE", 0),
        Target = d.Text("TARGET"),
        DevPrefix = d.Text("DEV_PREFIX"),
        DatastoreId = d.OptInt("DATASTORE_ID"),
        Type = d.Text("TYPE"),
        Format = d.Text("FORMAT") ?? d.Text("DRIVER"),
        IsClone = d.Yes("CLONE"),
        Persistent = d.Yes("PERSISTENT"),
        ReadOnly = d.Yes("READONLY"),
        TmMad = d.Text("TM_MAD"),
        Serial = d.Text("SERIAL"),
        Xml = d,
    };
}

public sealed record VmNic(int NicId, string? Network, int? NetworkId, string? Ip, string? Mac, XElement Xml)
{
    public static VmNic Parse(XElement n) =>
        new(n.Int("NIC_ID"), n.Text("NETWORK"), n.OptInt("NETWORK_ID"), n.Text("IP"), n.Text("MAC"), n);
}

/// <param name="ClusterId">The cluster of the host (CID): which datastores the VM's disks may be attached from.</param>
public sealed record VmHistory(int Sequence, string HostName, int HostId, int SystemDatastoreId, string? VmMad, string? TmMad, int ClusterId = 0)
{
    public static VmHistory Parse(XElement h) =>
        new(h.Int("SEQ"), h.Str("HOSTNAME"), h.Int("HID"), h.Int("DS_ID"), h.Text("VM_MAD"), h.Text("TM_MAD"), h.OptInt("CID") ?? 0);
}

public sealed record DiskSnapshot(int Id, string? Name, long Date, int Parent, IReadOnlyList<int> Children, bool Active, long SizeMb)
{
    public static DiskSnapshot Parse(XElement s) => new(
        s.Int("ID"), s.Text("NAME"), s.Long("DATE", 0), s.Int("PARENT"),
        [.. (s.Text("CHILDREN") ?? "").Split(',', StringSplitOptions.RemoveEmptyEntries).Select(c => int.Parse(c, System.Globalization.CultureInfo.InvariantCulture))],
        s.Yes("ACTIVE"), s.Long("SIZE", 0));
}

public sealed record DiskSnapshotSet(int DiskId, string? AllowOrphans, int NextSnapshot, IReadOnlyList<DiskSnapshot> Snapshots)
{
    public static DiskSnapshotSet Parse(XElement s) =>
        new(s.Int("DISK_ID"), s.Text("ALLOW_ORPHANS"), s.Int("NEXT_SNAPSHOT", 0), [.. s.Elements("SNAPSHOT").Select(DiskSnapshot.Parse)]);
}

public sealed class OneImage
{
    public required int Id { get; init; }
    public required string Name { get; init; }
    public int Uid { get; init; }
    public string UserName { get; init; } = "";
    public ImageType Type { get; init; }
    public int DiskType { get; init; }
    public bool Persistent { get; init; }
    public long SizeMb { get; init; }
    public required ImageState State { get; init; }
    public int RunningVms { get; init; }
    public int DatastoreId { get; init; }
    public string Datastore { get; init; } = "";
    public string? Format { get; init; }
    public string? Source { get; init; }
    public IReadOnlyList<int> Vms { get; init; } = [];
    public required XElement Template { get; init; }
    public required XElement Xml { get; init; }

    public string StateName => OneStateNames.Describe(State);

    /// <summary>TEMPLATE/ERROR, set when the image went to ERROR.</summary>
    public string? Error => Template.Text("ERROR");

    public static OneImage Parse(XElement i)
    {
        if (i.Name.LocalName != "IMAGE") throw new OneProtocolException($"Expected <IMAGE>, got <{i.Name.LocalName}>.");
        return new OneImage
        {
            Id = i.Int("ID"),
            Name = i.Str("NAME"),
            Uid = i.Int("UID"),
            UserName = i.Str("UNAME"),
            Type = (ImageType)i.Int("TYPE", 0),
            DiskType = i.Int("DISK_TYPE", 0),
            Persistent = i.Int("PERSISTENT", 0) == 1,
            SizeMb = i.Long("SIZE", 0),
            State = (ImageState)i.Int("STATE", 0),
            RunningVms = i.Int("RUNNING_VMS", 0),
            DatastoreId = i.Int("DATASTORE_ID"),
            Datastore = i.Str("DATASTORE"),
            Format = i.Text("FORMAT"),
            Source = i.Text("SOURCE"),
            Vms = i.Element("VMS").Ids(),
            Template = i.Element("TEMPLATE") ?? new XElement("TEMPLATE"),
            Xml = i,
        };
    }
}

public sealed record OneDatastore(int Id, string Name, DatastoreType Type, string DsMad, string TmMad, int State,
    long TotalMb, long FreeMb, long UsedMb, IReadOnlyList<int> Clusters, IReadOnlyList<int> Images, XElement Xml)
{
    public static OneDatastore Parse(XElement d) => new(
        d.Int("ID"), d.Str("NAME"), (DatastoreType)d.Int("TYPE", 0), d.Str("DS_MAD"), d.Str("TM_MAD"), d.Int("STATE", 0),
        d.Long("TOTAL_MB", 0), d.Long("FREE_MB", 0), d.Long("USED_MB", 0), d.Element("CLUSTERS").Ids(), d.Element("IMAGES").Ids(), d);
}

public sealed record OneHost(int Id, string Name, HostState State, string VmMad, int ClusterId, string Cluster,
    int RunningVms, IReadOnlyList<int> Vms, XElement Xml)
{
    public static OneHost Parse(XElement h) => new(
        h.Int("ID"), h.Str("NAME"), (HostState)h.Int("STATE", 0), h.Str("VM_MAD"), h.Int("CLUSTER_ID"), h.Str("CLUSTER"),
        h.Element("HOST_SHARE")?.Int("RUNNING_VMS", 0) ?? 0, h.Element("VMS").Ids(), h);

    /// <summary>What the host's monitoring says it runs (TEMPLATE/HYPERVISOR: kvm, lxc, ...), lower case; null before the first monitoring.</summary>
    public string? Hypervisor => Xml.Element("TEMPLATE")?.Text("HYPERVISOR") is { Length: > 0 } h ? h.ToLowerInvariant() : null;
}

public sealed record OneVmTemplate(int Id, string Name, int Uid, XElement Template, XElement Xml)
{
    public static OneVmTemplate Parse(XElement t) =>
        new(t.Int("ID"), t.Str("NAME"), t.Int("UID"), t.Element("TEMPLATE") ?? new XElement("TEMPLATE"), t);
}

public sealed record OneUser(int Id, string Name, int Gid, string GroupName, IReadOnlyList<int> Groups, XElement Xml)
{
    public static OneUser Parse(XElement u) =>
        new(u.Int("ID"), u.Str("NAME"), u.Int("GID"), u.Str("GNAME"), u.Element("GROUPS").Ids(), u);
}
