using System.Text.Json.Serialization;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>Everything the simulated front-end knows; serialised whole to state.json after each change.</summary>
public sealed class SimState
{
    public int NextVmId { get; set; }
    public int NextImageId { get; set; }
    public int NextTemplateId { get; set; }
    public int NextDatastoreId { get; set; }
    public int NextHostId { get; set; }
    public List<SimUser> Users { get; set; } = [];
    public List<SimHost> Hosts { get; set; } = [];
    public List<SimDatastore> Datastores { get; set; } = [];
    public List<SimImage> Images { get; set; } = [];
    public List<SimVm> Vms { get; set; } = [];
    public List<SimVmTemplate> Templates { get; set; } = [];
}

public sealed class SimUser
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public required string Password { get; set; }
    public int Gid { get; set; }
    public List<SimToken> Tokens { get; set; } = [];
}

public sealed record SimToken(string Token, long Expires);

public sealed class SimHost
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public int State { get; set; } = (int)HostState.Monitored;

    /// <summary>The monitoring driver (IM_MAD): its probes report HYPERVISOR.</summary>
    public string ImMad { get; set; } = "kvm";

    /// <summary>The VM driver (VM_MAD) as the site registered it: a KVM driver may have any name.</summary>
    public string VmMad { get; set; } = "kvm";

    /// <summary>The cluster the host is in (0: "default").</summary>
    public int ClusterId { get; set; }
}

public sealed class SimDatastore
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public DatastoreType Type { get; set; }
    public required string TmMad { get; set; }
    public long TotalMb { get; set; }

    /// <summary>Snapshot delete rules (docs/opennebula.md, "Snapshot delete rules"): NO, YES, MIXED or FORMAT.</summary>
    public string AllowOrphans { get; set; } = "NO";

    /// <summary>The clusters whose hosts reach it (CLUSTERS/ID): an image in it is attached only to a VM on one of their hosts.</summary>
    public List<int> Clusters { get; set; } = [0];
}

public sealed class SimImage
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public int Uid { get; set; }
    public int Gid { get; set; }
    public ImageType Type { get; set; }
    public bool Persistent { get; set; }
    public long SizeMb { get; set; }
    public ImageState State { get; set; }
    public ImageState PrevState { get; set; }
    public int DatastoreId { get; set; }
    public string Format { get; set; } = "raw";
    public long RegTime { get; set; }
    public List<int> Vms { get; set; } = [];

    /// <summary>The image TEMPLATE attributes (DEV_PREFIX, SAVED_*, ERROR, ...).</summary>
    public Dictionary<string, string> Template { get; set; } = [];
}

/// <summary>A disk snapshot's data moment: when it was taken of a running guest, or when the guest stopped writing.</summary>
public sealed record SimSnapshotMoment(int DiskId, int SnapshotId, string? Name, DateTimeOffset DataAt);

public sealed class SimSnapshot
{
    public int Id { get; set; }
    public string? Name { get; set; }
    public long Date { get; set; }
    public int Parent { get; set; } = -1;
    public bool Active { get; set; }
    public long SizeMb { get; set; }
}

public sealed class SimDiskSnapshots
{
    public int DiskId { get; set; }
    public int NextSnapshot { get; set; }

    /// <summary>MIXED mode only: the snapshot new ones hang under (the last one reverted to), -1 for the disk itself.</summary>
    public int CurrentBase { get; set; } = -1;
    public List<SimSnapshot> Snapshots { get; set; } = [];
}

public sealed class SimHistory
{
    public int Seq { get; set; }
    public int HostId { get; set; }
    public required string HostName { get; set; }

    /// <summary>The host's cluster when the VM was placed there (HISTORY/CID).</summary>
    public int ClusterId { get; set; }
    public int SystemDatastoreId { get; set; }
    public string VmMad { get; set; } = "kvm";
    public long STime { get; set; }
    public long ETime { get; set; }
    public int Action { get; set; }
}

public sealed class SimVm
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public int Uid { get; set; }
    public int Gid { get; set; }
    public VmState State { get; set; }
    public LcmState Lcm { get; set; }
    public VmState PrevState { get; set; }
    public LcmState PrevLcm { get; set; }
    public long STime { get; set; }
    public long ETime { get; set; }
    public int LockLevel { get; set; }
    public List<SimDiskSnapshots> Snapshots { get; set; } = [];
    public List<SimHistory> History { get; set; } = [];

    /// <summary>When the guest stopped writing (a suspend or power-off was asked for); null while it runs.</summary>
    public DateTimeOffset? GuestStoppedAt { get; set; }

    /// <summary>Every disk snapshot taken of this VM, with the moment its data is from (kept after the snapshot is deleted).</summary>
    public List<SimSnapshotMoment> SnapshotMoments { get; set; } = [];

    /// <summary>The TEMPLATE as oned keeps it (DISK, NIC, CONTEXT, CPU, ...), and the USER_TEMPLATE.</summary>
    [JsonIgnore] public XElement Template { get; set; } = new("TEMPLATE");
    [JsonIgnore] public XElement UserTemplate { get; set; } = new("USER_TEMPLATE");

    public string TemplateXml { get => Template.ToString(SaveOptions.DisableFormatting); set => Template = XElement.Parse(value); }
    public string UserTemplateXml { get => UserTemplate.ToString(SaveOptions.DisableFormatting); set => UserTemplate = XElement.Parse(value); }

    /// <summary>The guest view of this VM's attached disks (only the proxy VM has one): DISK_ID → device.</summary>
    public Dictionary<int, SimDevice> Devices { get; set; } = [];

    [JsonIgnore] public IEnumerable<XElement> Disks => Template.Elements("DISK");

    public XElement? Disk(int diskId) => Template.Elements("DISK").FirstOrDefault(d => (int?)d.Element("DISK_ID") == diskId);

    public SimDiskSnapshots SnapshotsOf(int diskId)
    {
        var set = Snapshots.FirstOrDefault(s => s.DiskId == diskId);
        if (set is null)
        {
            set = new SimDiskSnapshots { DiskId = diskId };
            Snapshots.Add(set);
        }
        return set;
    }
}

/// <summary>How an attached disk appears inside the proxy: a name in the devices directory and what backs it.</summary>
public sealed class SimDevice
{
    public required string Name { get; set; }
    public required string BackingFile { get; set; }
    public string? LoopDevice { get; set; }
    public bool ReadOnly { get; set; }
}

public sealed class SimVmTemplate
{
    public int Id { get; set; }
    public required string Name { get; set; }
    public int Uid { get; set; }
    public int Gid { get; set; }
    public long RegTime { get; set; }
    [JsonIgnore] public XElement Template { get; set; } = new("TEMPLATE");
    public string TemplateXml { get => Template.ToString(SaveOptions.DisableFormatting); set => Template = XElement.Parse(value); }
}
