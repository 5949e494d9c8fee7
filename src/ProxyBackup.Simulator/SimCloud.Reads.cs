using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

public sealed partial class SimCloud
{
    public string VmInfo(int id)
    {
        lock (_gate) return SimXml.Vm(VmOrThrow(id), this, full: true).ToString(SaveOptions.DisableFormatting);
    }

    public string VmPool(int filter, int start, int end, int state, bool extended)
    {
        if (filter < -4) throw new SimFailure(OneErrorCode.XmlRpcApi, "Incorrect filter_flag.");
        if (state < -2 || state > 11) throw new SimFailure(OneErrorCode.XmlRpcApi, "Incorrect filter_flag, state.");
        lock (_gate)
        {
            var vms = _s.Vms.Where(v => state == -2 || (state == -1 ? v.State != VmState.Done : (int)v.State == state))
                .Where(v => filter < 0 || v.Uid == filter);
            return Pool("VM_POOL", Page(vms.OrderBy(v => v.Id), v => v.Id, start, end).Select(v => SimXml.Vm(v, this, extended)));
        }
    }

    public string VmPoolInfoSet(string ids, bool extended)
    {
        var wanted = ids.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select(x => int.TryParse(x, out var i) ? i : throw new SimFailure(OneErrorCode.XmlRpcApi, $"Wrong ID list: {ids}")).ToHashSet();
        lock (_gate)
            return Pool("VM_POOL", _s.Vms.Where(v => wanted.Contains(v.Id)).OrderBy(v => v.Id).Select(v => SimXml.Vm(v, this, extended)));
    }

    public string ImageInfo(int id)
    {
        lock (_gate) return SimXml.Image(ImageOrThrow(id), this).ToString(SaveOptions.DisableFormatting);
    }

    public string ImagePool(int filter, int start, int end)
    {
        if (filter < -4) throw new SimFailure(OneErrorCode.XmlRpcApi, "Incorrect filter_flag.");
        lock (_gate)
            return Pool("IMAGE_POOL", Page(_s.Images.Where(i => filter < 0 || i.Uid == filter).OrderBy(i => i.Id), i => i.Id, start, end).Select(i => SimXml.Image(i, this)));
    }

    public string DatastoreInfo(int id)
    {
        lock (_gate)
            return SimXml.Datastore(Datastore(id) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting datastore [{id}].", id), this).ToString(SaveOptions.DisableFormatting);
    }

    public string DatastorePool()
    {
        lock (_gate) return Pool("DATASTORE_POOL", _s.Datastores.OrderByDescending(d => d.Id).Select(d => SimXml.Datastore(d, this)));
    }

    public string HostInfo(int id)
    {
        lock (_gate)
            return SimXml.Host(_s.Hosts.FirstOrDefault(h => h.Id == id) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting host [{id}].", id), this).ToString(SaveOptions.DisableFormatting);
    }

    public string HostPool()
    {
        lock (_gate) return Pool("HOST_POOL", _s.Hosts.OrderBy(h => h.Id).Select(h => SimXml.Host(h, this)));
    }

    public string TemplateInfo(int id)
    {
        lock (_gate) return SimXml.VmTemplate(TemplateOrThrow(id), this).ToString(SaveOptions.DisableFormatting);
    }

    public string TemplatePool(int filter, int start, int end)
    {
        lock (_gate)
            return Pool("VMTEMPLATE_POOL", Page(_s.Templates.Where(t => filter < 0 || t.Uid == filter).OrderBy(t => t.Id), t => t.Id, start, end).Select(t => SimXml.VmTemplate(t, this)));
    }

    public string UserInfo(int id, string caller)
    {
        lock (_gate)
        {
            var user = id == -1 ? _s.Users.First(u => u.Name == caller) : _s.Users.FirstOrDefault(u => u.Id == id);
            return SimXml.User(user ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting user [{id}].", id)).ToString(SaveOptions.DisableFormatting);
        }
    }

    private SimVmTemplate TemplateOrThrow(int id) =>
        _s.Templates.FirstOrDefault(t => t.Id == id) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting VM template [{id}].", id);

    private static string Pool(string root, IEnumerable<XElement> items) => new XElement(root, items).ToString(SaveOptions.DisableFormatting);

    /// <summary>oned's range semantics: end ≥ -1 is an ID range [start, end] (-1 open); end &lt; -1 pages (offset start, size -end).</summary>
    private static IEnumerable<T> Page<T>(IEnumerable<T> items, Func<T, int> id, int start, int end)
    {
        if (end < -1) return items.Skip(Math.Max(0, start)).Take(-end);
        return items.Where(x => (start < 0 || id(x) >= start) && (end == -1 || id(x) <= end));
    }

    /// <summary>The VM's TEMPLATE with the values oned computes at read time (image state, snapshot sizes).</summary>
    public XElement LiveTemplate(SimVm vm)
    {
        var t = new XElement(vm.Template);
        foreach (var d in t.Elements("DISK"))
        {
            if (ImageOf(d) is { } img) d.SetElementValue("IMAGE_STATE", (int)img.State);
            var set = vm.Snapshots.FirstOrDefault(s => s.DiskId == DiskId(d));
            if (d.Element("IMAGE_ID") is not null)
                d.SetElementValue("DISK_SNAPSHOT_TOTAL_SIZE", set?.Snapshots.Sum(s => s.SizeMb) ?? 0);
        }
        return t;
    }

    /// <summary>What the cloud holds, for tests and the demo: every leftover of a job shows here.</summary>
    public Dictionary<string, object?> Inventory()
    {
        lock (_gate)
        {
            var proxy = _s.Vms.FirstOrDefault(IsProxy);
            return new Dictionary<string, object?>
            {
                ["vms"] = _s.Vms.Count(v => v.State != VmState.Done),
                ["images"] = _s.Images.Select(i => (object?)i.Name).ToList(),
                ["disk_snapshots"] = _s.Vms.Where(v => v.State != VmState.Done).Sum(v => v.Snapshots.Sum(s => s.Snapshots.Count)),
                ["vms_with_snapshots"] = _s.Vms.Count(v => v.State != VmState.Done && v.Snapshots.Any(s => s.Snapshots.Count > 0)),
                ["proxy_vm"] = proxy?.Id ?? -1,
                ["proxy_disks"] = proxy?.Disks.Count() ?? 0,
                ["proxy_devices"] = proxy?.Devices.Count ?? 0,
                ["templates"] = _s.Templates.Count,
                ["busy_vms"] = _s.Vms.Count(v => OneStateNames.Settlement(v.State, v.Lcm) == VmSettlement.Transient),
            };
        }
    }
}
