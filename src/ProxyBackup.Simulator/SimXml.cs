using System.Globalization;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>Renders the simulator's objects in oned's XML shapes (CDATA for template values, names in order).</summary>
internal static class SimXml
{
    private static string S(long v) => v.ToString(CultureInfo.InvariantCulture);

    /// <summary>The simulator's two groups, as a fresh front-end has them.</summary>
    public static string GroupName(int gid) => gid switch { 0 => "oneadmin", 1 => "users", _ => $"group-{gid}" };

    private static XElement P(string name, object value) => new(name, value is long l ? S(l) : value is int i ? S(i) : value.ToString());

    private static XElement C(string name, string value) => new(name, new XCData(value));

    private static XElement Permissions() => new("PERMISSIONS",
        P("OWNER_U", 1), P("OWNER_M", 1), P("OWNER_A", 0), P("GROUP_U", 0), P("GROUP_M", 0), P("GROUP_A", 0),
        P("OTHER_U", 0), P("OTHER_M", 0), P("OTHER_A", 0));

    /// <summary>Template attributes ordered by name, vector children alphabetically, every value CDATA.</summary>
    public static XElement Template(XElement template, string rootName = "TEMPLATE") =>
        new(rootName, template.Elements()
            .OrderBy(e => e.Name.LocalName, StringComparer.Ordinal)
            .Select(e => e.HasElements
                ? new XElement(e.Name, e.Elements().OrderBy(c => c.Name.LocalName, StringComparer.Ordinal).Select(c => C(c.Name.LocalName, c.Value)))
                : C(e.Name.LocalName, e.Value)));

    public static XElement Vm(SimVm vm, SimCloud cloud, bool full)
    {
        var user = cloud.UserName(vm.Uid);
        var x = new XElement("VM", P("ID", vm.Id), P("UID", vm.Uid), P("GID", vm.Gid), P("UNAME", user), P("GNAME", GroupName(vm.Gid)), P("NAME", vm.Name));
        if (full) x.Add(Permissions());
        x.Add(P("LAST_POLL", 0), P("STATE", (int)vm.State), P("LCM_STATE", (int)vm.Lcm));
        if (full) x.Add(P("PREV_STATE", (int)vm.PrevState), P("PREV_LCM_STATE", (int)vm.PrevLcm));
        x.Add(P("RESCHED", 0), P("STIME", vm.STime), P("ETIME", vm.ETime), P("DEPLOY_ID", vm.History.Count > 0 ? $"one-{vm.Id}" : ""));
        if (vm.LockLevel > 0)
            x.Add(new XElement("LOCK", P("LOCKED", vm.LockLevel), P("OWNER", 0), P("TIME", vm.STime), P("REQ_ID", -1)));
        x.Add(new XElement("MONITORING"));
        var template = cloud.LiveTemplate(vm);
        if (full)
        {
            x.Add(new XElement("SCHED_ACTIONS"), Template(template), Template(vm.UserTemplate, "USER_TEMPLATE"));
            x.Add(new XElement("HISTORY_RECORDS", vm.History.Select(h => History(vm, h, full: true))));
            foreach (var set in vm.Snapshots.Where(s => s.Snapshots.Count > 0).OrderBy(s => s.DiskId))
                x.Add(Snapshots(set, cloud.AllowOrphansOf(vm, set.DiskId)));
            x.Add(new XElement("BACKUPS", new XElement("BACKUP_CONFIG"), new XElement("BACKUP_IDS")));
        }
        else
        {
            x.Add(ShortTemplate(template), ShortUserTemplate(vm.UserTemplate));
            var last = vm.History.LastOrDefault();
            x.Add(new XElement("HISTORY_RECORDS", last is null ? null : History(vm, last, full: false)));
        }
        return x;
    }

    private static XElement ShortTemplate(XElement t)
    {
        string[] diskKeys = ["DISK_ID", "DATASTORE", "DATASTORE_ID", "IMAGE", "IMAGE_ID", "SIZE", "TYPE", "CLONE", "CLONE_TARGET", "LN_TARGET", "DISK_SNAPSHOT_TOTAL_SIZE"];
        string[] nicKeys = ["IP", "IP6", "IP6_GLOBAL", "IP6_ULA", "MAC", "NETWORK", "NETWORK_ID", "NIC_ID", "SECURITY_GROUPS"];
        var x = new XElement("TEMPLATE");
        foreach (var k in new[] { "CPU", "MEMORY", "VCPU" })
            if (t.Element(k) is { } e) x.Add(P(k, e.Value));
        foreach (var d in t.Elements("DISK"))
            x.Add(new XElement("DISK", diskKeys.Where(k => d.Element(k) is not null).Select(k => C(k, d.Element(k)!.Value))));
        foreach (var n in t.Elements("NIC"))
            x.Add(new XElement("NIC", nicKeys.Where(k => n.Element(k) is not null).Select(k => C(k, n.Element(k)!.Value))));
        if (t.Element("GRAPHICS") is { } g) x.Add(Template(new XElement("X", g)).Elements());
        return x;
    }

    private static XElement ShortUserTemplate(XElement u) => new("USER_TEMPLATE",
        u.Elements().Where(e => e.Name.LocalName is "LABELS" or "ERROR" or "USER_PRIORITY" || e.Name.LocalName.StartsWith("SCHED_", StringComparison.Ordinal))
            .Select(e => C(e.Name.LocalName, e.Value)));

    private static XElement History(SimVm vm, SimHistory h, bool full)
    {
        var x = new XElement("HISTORY", P("OID", vm.Id), P("SEQ", h.Seq), full ? P("HOSTNAME", h.HostName) : C("HOSTNAME", h.HostName),
            P("HID", h.HostId), P("CID", h.ClusterId));
        if (full) x.Add(P("STIME", h.STime), P("ETIME", h.ETime));
        x.Add(P("DS_ID", h.SystemDatastoreId), C("VM_MAD", h.VmMad), C("TM_MAD", "qcow2"));
        x.Add(full ? P("ACTION", h.Action) : C("ACTION", S(h.Action)));
        return x;
    }

    private static XElement Snapshots(SimDiskSnapshots set, string allowOrphans)
    {
        var x = new XElement("SNAPSHOTS", C("ALLOW_ORPHANS", allowOrphans), C("CURRENT_BASE", S(set.CurrentBase)), C("DISK_ID", S(set.DiskId)), C("NEXT_SNAPSHOT", S(set.NextSnapshot)));
        foreach (var s in set.Snapshots)
        {
            var children = set.Snapshots.Where(c => c.Parent == s.Id).Select(c => S(c.Id)).ToList();
            var e = new XElement("SNAPSHOT");
            if (s.Active) e.Add(C("ACTIVE", "YES"));
            if (children.Count > 0) e.Add(C("CHILDREN", string.Join(',', children)));
            e.Add(C("DATE", S(s.Date)), C("ID", S(s.Id)));
            if (s.Name is { Length: > 0 }) e.Add(C("NAME", s.Name));
            e.Add(C("PARENT", S(s.Parent)), C("SIZE", S(s.SizeMb)));
            x.Add(e);
        }
        return x;
    }

    public static XElement Image(SimImage i, SimCloud cloud)
    {
        var ds = cloud.Datastore(i.DatastoreId);
        return new XElement("IMAGE", P("ID", i.Id), P("UID", i.Uid), P("GID", i.Gid), P("UNAME", cloud.UserName(i.Uid)), P("GNAME", GroupName(i.Gid)),
            P("NAME", i.Name), Permissions(), P("TYPE", (int)i.Type), P("DISK_TYPE", 0), P("PERSISTENT", i.Persistent ? 1 : 0),
            P("REGTIME", i.RegTime), C("SOURCE", cloud.ImageSource(i)), C("PATH", ""), C("FORMAT", i.Format), C("FS", ""),
            P("SIZE", i.SizeMb), P("STATE", (int)i.State), P("PREV_STATE", (int)i.PrevState), P("RUNNING_VMS", i.Vms.Count),
            P("CLONING_OPS", 0), P("CLONING_ID", -1), P("TARGET_SNAPSHOT", -1), P("DATASTORE_ID", i.DatastoreId), P("DATASTORE", ds?.Name ?? ""),
            new XElement("VMS", i.Vms.Select(v => P("ID", v))), new XElement("CLONES"), new XElement("APP_CLONES"),
            Template(new XElement("TEMPLATE", i.Template.Select(kv => new XElement(kv.Key, kv.Value)))),
            new XElement("SNAPSHOTS", C("ALLOW_ORPHANS", "NO"), C("CURRENT_BASE", "-1"), C("NEXT_SNAPSHOT", "0")),
            new XElement("BACKUP_INCREMENTS"), new XElement("BACKUP_DISK_IDS"));
    }

    public static XElement Datastore(SimDatastore d, SimCloud cloud)
    {
        var used = cloud.UsedMb(d);
        return new XElement("DATASTORE", P("ID", d.Id), P("UID", 0), P("GID", 0), P("UNAME", "oneadmin"), P("GNAME", "oneadmin"), P("NAME", d.Name),
            Permissions(), C("DS_MAD", d.Type == DatastoreType.System ? "-" : "fs"), C("TM_MAD", d.TmMad), C("BASE_PATH", $"/var/lib/one/datastores/{d.Id}"),
            P("TYPE", (int)d.Type), P("DISK_TYPE", 0), P("STATE", 0), new XElement("CLUSTERS", d.Clusters.Select(c => P("ID", c))),
            P("TOTAL_MB", d.TotalMb), P("FREE_MB", Math.Max(0, d.TotalMb - used)), P("USED_MB", used),
            new XElement("IMAGES", cloud.ImagesIn(d.Id).Select(i => P("ID", i))),
            Template(new XElement("TEMPLATE", new XElement("ALLOW_ORPHANS", d.AllowOrphans), new XElement("TM_MAD", d.TmMad),
                new XElement("TYPE", d.Type switch { DatastoreType.System => "SYSTEM_DS", DatastoreType.File => "FILE_DS", DatastoreType.Backup => "BACKUP_DS", _ => "IMAGE_DS" }))));
    }

    public static XElement Host(SimHost h, SimCloud cloud)
    {
        var vms = cloud.VmsOnHost(h.Id).ToList();
        return new XElement("HOST", P("ID", h.Id), P("NAME", h.Name), P("STATE", h.State), P("PREV_STATE", h.State), C("IM_MAD", h.ImMad), C("VM_MAD", h.VmMad),
            P("CLUSTER_ID", h.ClusterId), P("CLUSTER", SimCloud.ClusterName(h.ClusterId)),
            new XElement("HOST_SHARE", P("MEM_USAGE", 0), P("CPU_USAGE", 0), P("TOTAL_MEM", 16777216), P("TOTAL_CPU", 800), P("MAX_MEM", 16777216),
                P("MAX_CPU", 800), P("RUNNING_VMS", vms.Count), P("VMS_THREAD", 1), new XElement("DATASTORES"), new XElement("PCI_DEVICES"), new XElement("NUMA_NODES")),
            new XElement("VMS", vms.Select(v => P("ID", v))),
            new XElement("TEMPLATE", C("HYPERVISOR", h.ImMad), C("IM_MAD", h.ImMad), C("VM_MAD", h.VmMad)), new XElement("MONITORING"));
    }

    public static XElement VmTemplate(SimVmTemplate t, SimCloud cloud) =>
        new("VMTEMPLATE", P("ID", t.Id), P("UID", t.Uid), P("GID", t.Gid), P("UNAME", cloud.UserName(t.Uid)), P("GNAME", GroupName(t.Gid)), P("NAME", t.Name),
            new XElement("LOCK"), Permissions(), P("REGTIME", t.RegTime), Template(t.Template));

    public static XElement User(SimUser u) =>
        new("USER", P("ID", u.Id), P("GID", u.Gid), new XElement("GROUPS", P("ID", u.Gid)), P("GNAME", GroupName(u.Gid)), P("NAME", u.Name),
            P("PASSWORD", "*"), P("AUTH_DRIVER", "core"), P("ENABLED", 1), new XElement("LOGIN_TOKEN"), new XElement("TEMPLATE"));

    public static XElement Config() => new("OPENNEBULA_CONFIGURATION",
        C("DEFAULT_DEVICE_PREFIX", "sd"), C("DEFAULT_CDROM_DEVICE_PREFIX", "hd"), C("DATASTORE_CAPACITY_CHECK", "yes"),
        C("INHERIT_DATASTORE_ATTR", "CEPH_HOST"), C("INHERIT_DATASTORE_ATTR", "CEPH_SECRET"), C("INHERIT_DATASTORE_ATTR", "POOL_NAME"),
        C("INHERIT_IMAGE_ATTR", "ISCSI_USER"), C("VM_RESTRICTED_ATTR", "DISK/ORIGINAL_SIZE"), C("VM_RESTRICTED_ATTR", "NIC/MAC"),
        C("VERSION", SimCloud.Version));
}
