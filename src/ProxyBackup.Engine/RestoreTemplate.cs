using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>How the re-created VM's network is set up.</summary>
public enum NicMode
{
    /// <summary>NICs on the same networks, addresses taken from the network anew.</summary>
    Keep,

    /// <summary>As Keep, and explicitly without IP/MAC (the default: the original VM may still hold its leases).</summary>
    NoIp,

    /// <summary>No NIC at all.</summary>
    NoNic,
}

/// <summary>
/// Builds the template of a restored VM from its saved document, removing what OpenNebula sets
/// itself (docs/opennebula.md, "Restore template": OpenNebula's own backup.rb plus ProxyBackup's additions).
/// </summary>
public static class RestoreTemplate
{
    private static readonly HashSet<string> DiskDrop = new(StringComparer.Ordinal)
    {
        "ALLOW_ORPHANS", "CLONE", "CLONE_TARGET", "CLUSTER_ID", "DATASTORE", "DATASTORE_ID", "DISK_SNAPSHOT_TOTAL_SIZE", "DISK_TYPE",
        "DRIVER", "IMAGE", "IMAGE_STATE", "IMAGE_UID", "IMAGE_UNAME", "LN_TARGET", "OPENNEBULA_MANAGED", "ORIGINAL_SIZE", "PERSISTENT",
        "READONLY", "SAVE", "SOURCE", "TARGET", "TM_MAD", "FORMAT", "DISK_ID",
        // transient flags and inherited datastore/image attributes (docs/opennebula.md, "Restore template")
        "ATTACH", "CLONING", "DISK_SNAPSHOT_ACTIVE", "DISK_SNAPSHOT_ID", "HOTPLUG_SAVE_AS", "HOTPLUG_SAVE_AS_ACTIVE", "HOTPLUG_SAVE_AS_SOURCE",
        "HOTPLUG_SAVE_AS_SNAPSHOT_ID", "RESIZE", "SIZE_PREV", "TM_MAD_SYSTEM", "CEPH_HOST", "CEPH_SECRET", "CEPH_USER", "CEPH_KEY", "CEPH_CONF",
        "CEPH_TRASH", "POOL_NAME", "QCOW2_STANDALONE", "SPARSE", "LUKS_SECRET", "LVM_THIN_ENABLE", "PERSISTENT_SNAPSHOTS",
    };

    private static readonly HashSet<string> NicDrop = new(StringComparer.Ordinal)
    {
        "AR_ID", "BRIDGE", "BRIDGE_TYPE", "CLUSTER_ID", "NAME", "NETWORK_ID", "NIC_ID", "TARGET", "VLAN_ID", "VN_MAD", "VLAN_TAGGED_ID", "PHYDEV",
        "OUTER_VLAN_ID", "PARENT_NETWORK_ID",
    };

    private static readonly string[] NicAddresses = ["IP", "IP6", "IP6_ULA", "IP6_GLOBAL", "MAC"];

    private static readonly HashSet<string> TopDrop = new(StringComparer.Ordinal)
    {
        "AUTOMATIC_DS_REQUIREMENTS", "AUTOMATIC_NIC_REQUIREMENTS", "AUTOMATIC_REQUIREMENTS", "VMID", "TEMPLATE_ID", "TM_MAD_SYSTEM",
        "SECURITY_GROUP_RULE", "ERROR", "SNAPSHOT", "TEMPLATE_NAME", "SCHED_MESSAGE",
    };

    /// <param name="restoredImages">DISK_ID → image holding its restored content.</param>
    public static OneTemplate Build(VirtualMachine saved, IReadOnlyDictionary<int, int> restoredImages, string name, NicMode nics, int? systemDatastoreId)
    {
        var t = new XElement("TEMPLATE");
        // USER_TEMPLATE first, TEMPLATE over it, as backup.rb merges them.
        foreach (var e in saved.UserTemplate.Elements().Concat(saved.Template.Elements()))
        {
            var n = e.Name.LocalName;
            if (TopDrop.Contains(n) || n is "DISK" or "NIC" or "NIC_ALIAS" or "NAME") continue;
            t.Elements(n).Where(_ => !e.HasElements).Remove();
            t.Add(Clean(e, n));
        }
        foreach (var d in saved.Template.Elements("DISK"))
        {
            var disk = VmDisk.Parse(d);
            var x = UserDisk(d);
            if (restoredImages.TryGetValue(disk.DiskId, out var imageId))
            {
                x.Elements("TYPE").Remove();
                x.Elements("SIZE").Remove();
                x.SetElementValue("IMAGE_ID", imageId);
            }
            else if (disk.IsVolatile)
            {
                x.Elements("IMAGE_ID").Remove();
            }
            else if (!disk.IsCdrom)
            {
                continue; // neither restored nor re-creatable
            }
            t.Add(x);
        }
        if (nics != NicMode.NoNic)
            foreach (var n in saved.Template.Elements("NIC"))
            {
                var x = new XElement("NIC", n.Elements().Where(c => !NicDrop.Contains(c.Name.LocalName) && c.Value.Length > 0
                    && !(nics == NicMode.NoIp && NicAddresses.Contains(c.Name.LocalName))).Select(c => new XElement(c.Name, c.Value)));
                if (nics == NicMode.Keep && x.Element("IP") is not null)
                    foreach (var a in new[] { "MAC", "IP6", "IP6_ULA", "IP6_GLOBAL" }) x.Elements(a).Remove();
                t.Add(x);
            }
        if (systemDatastoreId is { } ds) t.SetElementValue("SCHED_DS_REQUIREMENTS", $"ID=\"{ds}\"");
        t.SetElementValue("NAME", name);
        return OneTemplate.From(t);
    }

    /// <summary>A disk's attributes an operator sets (bus, cache, discard, ...), without what OpenNebula fills in.</summary>
    private static XElement UserDisk(XElement disk) =>
        new("DISK", disk.Elements().Where(c => !DiskDrop.Contains(c.Name.LocalName) && c.Value.Length > 0).Select(c => new XElement(c.Name, c.Value)));

    /// <summary>
    /// The DISK to attach in place of <paramref name="original"/> (an in-place restore): its operator's
    /// attributes, the image holding the restored content, and the same TARGET, so the guest finds
    /// the same device (docs/opennebula.md, "In-place restore").
    /// </summary>
    public static OneTemplate AttachDisk(XElement original, int imageId)
    {
        var x = UserDisk(original);
        x.Elements("TYPE").Remove();
        x.Elements("SIZE").Remove();
        x.SetElementValue("IMAGE_ID", imageId);
        if (original.Element("TARGET")?.Value is { Length: > 0 } target) x.SetElementValue("TARGET", target);
        return OneTemplate.From(new XElement("TEMPLATE", x));
    }

    private static XElement Clean(XElement e, string name) => name switch
    {
        "GRAPHICS" => Without(e, "PORT"),
        "OS" => Without(e, "UUID"),
        "NUMA_NODE" => Without(e, "CPUS", "MEMORY_NODE_ID", "NODE_ID"),
        "CONTEXT" => new XElement(e.Name, e.Elements().Where(c => c.Name.LocalName != "DISK_ID"
            && !System.Text.RegularExpressions.Regex.IsMatch(c.Name.LocalName, "^(ETH|PCI)[0-9]+_")).Select(c => new XElement(c.Name, c.Value))),
        _ => new XElement(e.Name, e.HasElements ? e.Elements().Select(c => new XElement(c.Name, c.Value)) : e.Value),
    };

    private static XElement Without(XElement e, params string[] drop) =>
        new(e.Name, e.Elements().Where(c => !drop.Contains(c.Name.LocalName)).Select(c => new XElement(c.Name, c.Value)));
}
