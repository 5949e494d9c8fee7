using System.Globalization;
using System.Text.RegularExpressions;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>VM creation, placement, power actions, termination, locks and user templates.</summary>
public sealed partial class SimCloud
{
    private static readonly string[] TemplateOnlyAttrs = ["NAME"];

    public int VmAllocate(string templateText, bool hold, int uid, int? templateId = null, string? templateName = null)
    {
        lock (_gate)
        {
            XElement t;
            try { t = TemplateParser.Parse(templateText); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message); }
            return CreateVm(t, hold, uid, templateId, templateName);
        }
    }

    private int CreateVm(XElement spec, bool hold, int uid, int? templateId, string? templateName)
    {
        if (spec.Element("MEMORY") is null) throw new SimFailure(OneErrorCode.Internal, "No MEMORY in template.");
        if (spec.Element("CPU") is null) throw new SimFailure(OneErrorCode.Internal, "No CPU in template.");
        var id = _s.NextVmId;
        var vm = new SimVm { Id = id, Name = spec.Element("NAME")?.Value ?? $"one-{id}", Uid = uid, Gid = GidOf(uid), STime = Now, State = hold ? VmState.Hold : VmState.Pending };
        if (!OneTemplate.IsValidObjectName(vm.Name)) throw new SimFailure(OneErrorCode.Internal, $"Invalid NAME: {vm.Name}.");
        var user = new XElement("USER_TEMPLATE");
        var template = new XElement("TEMPLATE");
        foreach (var e in spec.Elements().Where(e => !TemplateOnlyAttrs.Contains(e.Name.LocalName)))
        {
            var name = e.Name.LocalName;
            if (name is "DISK" or "NIC" or "CONTEXT") continue;
            var goesToTemplate = name is "CPU" or "VCPU" or "MEMORY" or "OS" or "GRAPHICS" or "FEATURES" or "INPUT" or "RAW" or "CPU_MODEL"
                or "SCHED_DS_REQUIREMENTS" or "SCHED_REQUIREMENTS" or "BACKUP_CONFIG" or "VIDEO" or "NUMA_NODE" or "TOPOLOGY";
            (goesToTemplate ? template : user).Add(new XElement(e));
        }
        vm.Template = template;
        vm.UserTemplate = user;
        var acquired = new List<XElement>();
        try
        {
            var diskId = 0;
            foreach (var d in spec.Elements("DISK"))
            {
                var disk = BuildDisk(vm, d, diskId++, attaching: false, -1);
                acquired.Add(disk);
                vm.Template.Add(disk);
            }
        }
        catch
        {
            foreach (var d in acquired) ReleaseImage(vm, d);
            throw;
        }
        var nicId = 0;
        foreach (var n in spec.Elements("NIC"))
        {
            var nic = new XElement(n);
            nic.SetElementValue("NIC_ID", nicId);
            nic.SetElementValue("NETWORK_ID", 0);
            nic.SetElementValue("NETWORK", n.Element("NETWORK")?.Value ?? "lan");
            nic.SetElementValue("BRIDGE", "br0");
            nic.SetElementValue("VN_MAD", "bridge");
            nic.SetElementValue("TARGET", $"one-{id}-{nicId}");
            var host = 10 + id * 4 + nicId;
            if (n.Element("IP") is null) nic.SetElementValue("IP", $"10.0.{host / 250}.{host % 250 + 2}");
            if (n.Element("MAC") is null) nic.SetElementValue("MAC", $"02:00:0a:00:{host / 250:x2}:{host % 250 + 2:x2}");
            nicId++;
            vm.Template.Add(nic);
        }
        if (spec.Element("CONTEXT") is { } ctx)
        {
            var context = new XElement(ctx);
            context.SetElementValue("DISK_ID", vm.Disks.Count());
            context.SetElementValue("TARGET", Target(new XElement("DISK", new XElement("DEV_PREFIX", "hd")), null,
                vm.Disks.Select(d => d.Element("TARGET")?.Value).OfType<string>().ToHashSet(), OneErrorCode.Internal, -1));
            vm.Template.Add(context);
        }
        vm.Template.SetElementValue("VMID", id);
        vm.Template.SetElementValue("TM_MAD_SYSTEM", "qcow2");
        var reaching = ClustersReaching(vm) ?? [.. _s.Hosts.Select(h => h.ClusterId).Distinct().Order()];
        vm.Template.SetElementValue("AUTOMATIC_REQUIREMENTS", $"({string.Join(" | ", reaching.Select(c => $"CLUSTER_ID = {c}"))}) & !(PUBLIC_CLOUD = YES)");
        if (templateId is { } tid)
        {
            vm.Template.SetElementValue("TEMPLATE_ID", tid);
            vm.UserTemplate.SetElementValue("TEMPLATE_NAME", templateName);
        }
        _s.NextVmId++;
        _s.Vms.Add(vm);
        Save();
        if (!hold) Schedule(vm, hostId: null, systemDsId: null);
        return id;
    }

    /// <summary>
    /// The scheduler's part: every pass, pick an enabled host and the system datastore, then PROLOG
    /// (copy disks) → BOOT → RUNNING. A VM that fits nowhere stays PENDING with the reason in
    /// USER_TEMPLATE/SCHED_MESSAGE and is tried again at the next pass (docs/opennebula.md, "Restore flow").
    /// </summary>
    private void Schedule(SimVm vm, int? hostId, int? systemDsId)
    {
        _ = Task.Run(async () =>
        {
            try
            {
                SimHost host;
                int dsId;
                while (true)
                {
                    await Task.Delay(Options.OperationTime, _stop.Token).ConfigureAwait(false);
                    lock (_gate)
                    {
                        if (vm.State is not (VmState.Pending)) return;
                        // A VM waits while one of its images is still being copied (LOCKED_USED).
                        if (vm.Disks.Any(d => ImageOf(d)?.State is ImageState.LockedUsed or ImageState.LockedUsedPers)) continue;
                        var requested = systemDsId ?? RequestedSystemDatastore(vm);
                        var ds = requested is { } r ? Datastore(r) : _s.Datastores.FirstOrDefault(d => d.Type == DatastoreType.System);
                        // The scheduler's automatic requirement: a host of a cluster every image datastore of the VM is in.
                        var clusters = ClustersReaching(vm);
                        var candidate = hostId is { } h ? _s.Hosts.FirstOrDefault(x => x.Id == h)
                            : _s.Hosts.Where(x => x.State == (int)HostState.Monitored && (clusters is null || clusters.Contains(x.ClusterId))).OrderBy(x => VmsOnHost(x.Id).Count()).FirstOrDefault();
                        var why = ds is not { Type: DatastoreType.System } ? $"No system datastore meets capacity and SCHED_DS_REQUIREMENTS: ID={requested}"
                            : candidate is null ? "Cannot dispatch VM to any Host. Possible reasons: Not enough capacity in Host or System DS, dispatch limit reached, or limit of free leases reached."
                            : null;
                        if (why is not null)
                        {
                            vm.UserTemplate.SetElementValue("SCHED_MESSAGE", $"{DateTime.UtcNow:ddd MMM d HH:mm:ss yyyy} : {why}");
                            Save();
                            continue;
                        }
                        (host, dsId) = (candidate!, ds!.Id);
                        vm.UserTemplate.Element("SCHED_MESSAGE")?.Remove();
                        vm.History.Add(new SimHistory { Seq = vm.History.Count, HostId = host.Id, HostName = host.Name, ClusterId = host.ClusterId, SystemDatastoreId = dsId, VmMad = host.VmMad, STime = Now });
                        (vm.State, vm.Lcm) = (VmState.Active, LcmState.Prolog);
                        Save();
                        break;
                    }
                }
                foreach (var d in vm.Disks.ToList()) PrepareDiskData(vm, d, ImageOf(d));
                lock (_gate) { vm.Lcm = LcmState.Boot; Save(); }
                await Task.Delay(Options.OperationTime, _stop.Token).ConfigureAwait(false);
                lock (_gate)
                {
                    vm.Lcm = LcmState.Running;
                    if (IsProxy(vm) && ProxyDisks.ShowsOwnDisks) ExposeOwnDisks(vm);
                    Save();
                }
            }
            catch (OperationCanceledException) { }
        });
    }

    /// <summary>one.host.allocate: a host with the drivers a site registered (monitoring IM_MAD, VM driver VM_MAD).</summary>
    public int HostAllocate(string name, string imMad, string vmMad)
    {
        lock (_gate)
        {
            if (_s.Hosts.Any(h => h.Name == name)) throw new SimFailure(OneErrorCode.Internal, $"NAME is already taken by HOST {_s.Hosts.First(h => h.Name == name).Id}.");
            var host = new SimHost { Id = _s.NextHostId++, Name = name, ImMad = imMad, VmMad = vmMad };
            _s.Hosts.Add(host);
            Save();
            return host.Id;
        }
    }

    /// <summary>one.host.status: 0 enables a host, 1 disables it, 2 sets it offline; the scheduler uses enabled hosts only.</summary>
    public int HostStatus(int hostId, int status)
    {
        lock (_gate)
        {
            var host = _s.Hosts.FirstOrDefault(h => h.Id == hostId) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting host [{hostId}].", hostId);
            host.State = status switch
            {
                0 => (int)HostState.Monitored,
                1 => (int)HostState.Disabled,
                2 => (int)HostState.Offline,
                _ => throw new SimFailure(OneErrorCode.XmlRpcApi, "Wrong status.", hostId),
            };
            Save();
            return hostId;
        }
    }

    private int? RequestedSystemDatastore(SimVm vm)
    {
        var req = vm.Template.Element("SCHED_DS_REQUIREMENTS")?.Value;
        var m = req is null ? null : Regex.Match(req, "ID\\s*=\\s*\"?(\\d+)\"?");
        return m is { Success: true } ? int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture) : null;
    }

    /// <summary>The proxy's own disks appear in its devices directory too, so the appliance must tell them apart.</summary>
    private void ExposeOwnDisks(SimVm vm)
    {
        foreach (var d in vm.Disks)
            if (!vm.Devices.ContainsKey(DiskId(d)))
                vm.Devices[DiskId(d)] = ProxyDisks.Expose(DiskFile(vm, d), readOnly: false, vm.Id);
    }

    public int VmDeploy(int vmId, int hostId, int systemDsId)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            if (vm.State is not (VmState.Pending or VmState.Hold or VmState.Stopped or VmState.Undeployed))
                throw new SimFailure(OneErrorCode.Action, $"Could not deploy VM {vmId}, wrong state {Name(vm)}.", vmId);
            if (_s.Hosts.All(h => h.Id != hostId)) throw new SimFailure(OneErrorCode.NoExists, $"Error getting host [{hostId}].", hostId);
            vm.State = VmState.Pending;
            Save();
            Schedule(vm, hostId, systemDsId >= 0 ? systemDsId : null);
            return vmId;
        }
    }

    public int VmAction(string action, int vmId, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var running = vm is { State: VmState.Active, Lcm: LcmState.Running };
            LcmState transient;
            VmState target;
            switch (action)
            {
                case "poweroff" or "poweroff-hard":
                    if (!running && !(action == "poweroff-hard" && vm.Lcm == LcmState.ShutdownPoweroff)) throw WrongState(action, vm);
                    (transient, target) = (LcmState.ShutdownPoweroff, VmState.Poweroff);
                    break;
                case "suspend":
                    if (!running) throw WrongState(action, vm);
                    (transient, target) = (LcmState.SaveSuspend, VmState.Suspended);
                    break;
                case "resume":
                    if (vm.State is VmState.Poweroff) (transient, target) = (LcmState.BootPoweroff, VmState.Active);
                    else if (vm.State is VmState.Suspended) (transient, target) = (LcmState.BootSuspended, VmState.Active);
                    else throw WrongState(action, vm);
                    break;
                case "terminate" or "terminate-hard":
                    if (vm.State is not (VmState.Active or VmState.Poweroff or VmState.Suspended or VmState.Undeployed or VmState.Stopped or VmState.Pending or VmState.Hold))
                        throw WrongState(action, vm);
                    Terminate(vm);
                    return vmId;
                case "hold":
                    if (vm.State != VmState.Pending) throw WrongState(action, vm);
                    vm.State = VmState.Hold;
                    Save();
                    return vmId;
                case "release":
                    if (vm.State != VmState.Hold) throw WrongState(action, vm);
                    vm.State = VmState.Pending;
                    Save();
                    Schedule(vm, null, null);
                    return vmId;
                case "reboot" or "reboot-hard":
                    if (!running) throw WrongState(action, vm);
                    return vmId;
                case "undeploy" or "undeploy-hard" or "stop" or "resched" or "unresched":
                    throw new SimFailure(OneErrorCode.Action, $"Action \"{action}\" is not supported by the simulator.", vmId);
                default:
                    throw new SimFailure(OneErrorCode.Action, $"Action \"{action}\" is not supported", vmId);
            }
            Enter(vm, transient);
            // The guest is paused as soon as the save or shutdown starts.
            if (target != VmState.Active) vm.GuestStoppedAt ??= DateTimeOffset.UtcNow;
            Save();
            Later(SimOperation.VmAction, outcome,
                onSuccess: () =>
                {
                    (vm.PrevState, vm.PrevLcm) = (vm.State, vm.Lcm);
                    (vm.State, vm.Lcm) = target == VmState.Active ? (VmState.Active, LcmState.Running) : (target, LcmState.LcmInit);
                    if (target == VmState.Active) vm.GuestStoppedAt = null;
                },
                onFailure: () =>
                {
                    Return(vm);
                    if (vm.State == VmState.Active) vm.GuestStoppedAt = null;
                    if (action == "resume") SetError(vm, "Error resuming VM");
                });
            return vmId;
        }
    }

    private static SimFailure WrongState(string action, SimVm vm) =>
        new(OneErrorCode.Action, $"Could not perform action \"{action}\" on VM {vm.Id}, wrong state {Name(vm)}.", vm.Id);

    private void Terminate(SimVm vm)
    {
        Enter(vm, LcmState.Shutdown);
        Save();
        Later(SimOperation.Terminate, OpOutcome.Succeed, onSuccess: () =>
        {
            foreach (var dev in vm.Devices.Values) ProxyDisks.Remove(dev);
            vm.Devices.Clear();
            foreach (var d in vm.Disks) ReleaseImage(vm, d);
            vm.Snapshots.Clear();
            (vm.State, vm.Lcm, vm.ETime) = (VmState.Done, LcmState.LcmInit, Now);
            if (vm.History.LastOrDefault() is { } h) h.ETime = Now;
            try { Directory.Delete(VmDir(vm.Id), recursive: true); }
            catch (DirectoryNotFoundException) { }
        }, onFailure: () => { });
    }

    public int VmRecover(int vmId, int operation)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            if (vm.State != VmState.Active) throw new SimFailure(OneErrorCode.Action, $"Could not recover VM {vmId}, wrong state {Name(vm)}.", vmId);
            switch (operation)
            {
                case 0: Return(vm); break;
                case 1: (vm.State, vm.Lcm) = (VmState.Active, LcmState.Running); break;
                case 3: Terminate(vm); return vmId;
                default: throw new SimFailure(OneErrorCode.Action, $"Recover operation {operation} is not supported by the simulator.", vmId);
            }
            foreach (var d in vm.Disks) { d.Element("ATTACH")?.Remove(); ClearSaveAsFlags(d); }
            Save();
            return vmId;
        }
    }

    public int VmLock(int vmId, int level, bool test)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            if (level is < 1 or > 4) throw new SimFailure(OneErrorCode.XmlRpcApi, "Wrong lock level.", vmId);
            if (test && vm.LockLevel > 0) throw new SimFailure(OneErrorCode.Action, vm.STime.ToString(CultureInfo.InvariantCulture), vmId);
            vm.LockLevel = level == 4 ? 1 : level;
            Save();
            return vmId;
        }
    }

    public int VmUnlock(int vmId)
    {
        lock (_gate)
        {
            VmOrThrow(vmId).LockLevel = 0;
            Save();
            return vmId;
        }
    }

    /// <summary>A lock at level L refuses every operation of level ≥ L, for everybody (docs/opennebula.md, "Locks").</summary>
    public void CheckLock(int vmId, int operationLevel, string operation)
    {
        lock (_gate)
        {
            var vm = _s.Vms.FirstOrDefault(v => v.Id == vmId);
            if (vm is { LockLevel: > 0 } && vm.LockLevel <= operationLevel)
                throw new SimFailure(OneErrorCode.Authorization, $"Not authorized to perform {operation} VM [{vmId}]. VM is locked. [{vmId}]", vmId);
        }
    }

    public int VmUpdate(int vmId, string templateText, int type)
    {
        if (type is not (0 or 1)) throw new SimFailure(OneErrorCode.XmlRpcApi, "Wrong update type.", vmId);
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            XElement t;
            try { t = TemplateParser.Parse(templateText); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message, vmId); }
            if (type == 0) vm.UserTemplate = new XElement("USER_TEMPLATE", t.Elements());
            else
                foreach (var e in t.Elements())
                {
                    vm.UserTemplate.Elements(e.Name).Remove();
                    vm.UserTemplate.Add(e);
                }
            Save();
            return vmId;
        }
    }

    public int VmRename(int vmId, string name)
    {
        if (!OneTemplate.IsValidObjectName(name)) throw new SimFailure(OneErrorCode.Action, $"Invalid name: {name}.", vmId);
        lock (_gate)
        {
            VmOrThrow(vmId).Name = name;
            Save();
            return vmId;
        }
    }

    // ---- VM templates -----------------------------------------------------------------------

    public int TemplateAllocate(string text, int uid)
    {
        lock (_gate)
        {
            XElement t;
            try { t = TemplateParser.Parse(text); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message); }
            var name = t.Element("NAME")?.Value ?? $"template-{_s.NextTemplateId}";
            if (_s.Templates.FirstOrDefault(x => x.Name == name && x.Uid == uid) is { } taken)
                throw new SimFailure(OneErrorCode.Internal, $"NAME is already taken by TEMPLATE {taken.Id}.");
            var tpl = new SimVmTemplate { Id = _s.NextTemplateId++, Name = name, Uid = uid, Gid = GidOf(uid), RegTime = Now, Template = t };
            _s.Templates.Add(tpl);
            Save();
            return tpl.Id;
        }
    }

    public int TemplateRename(int id, string name)
    {
        lock (_gate)
        {
            var tpl = TemplateOrThrow(id);
            if (!OneTemplate.IsValidObjectName(name)) throw new SimFailure(OneErrorCode.Action, $"Invalid name: {name}.", id);
            if (_s.Templates.Any(t => t.Name == name && t.Id != id && t.Uid == tpl.Uid)) throw new SimFailure(OneErrorCode.Action, "NAME is already taken by TEMPLATE.", id);
            tpl.Name = name;
            tpl.Template.SetElementValue("NAME", name);
            Save();
            return id;
        }
    }

    public int TemplateInstantiate(int id, string vmName, bool hold, string extra, int uid)
    {
        lock (_gate)
        {
            var tpl = TemplateOrThrow(id);
            var merged = new XElement(tpl.Template);
            if (extra.Length > 0)
            {
                XElement x;
                try { x = TemplateParser.Parse(extra); }
                catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Allocate, e.Message); }
                foreach (var name in x.Elements().Select(e => e.Name).Distinct()) merged.Elements(name).Remove();
                merged.Add(x.Elements());
            }
            merged.SetElementValue("NAME", vmName.Length > 0 ? vmName : $"{tpl.Name}-{_s.NextVmId}");
            try { return CreateVm(merged, hold, uid, tpl.Id, tpl.Name); }
            catch (SimFailure f) { throw new SimFailure(OneErrorCode.Allocate, f.Message, f.ObjectId); }
        }
    }

    public int TemplateDelete(int id, bool recursive)
    {
        lock (_gate)
        {
            var tpl = TemplateOrThrow(id);
            if (recursive)
                foreach (var imageId in tpl.Template.Elements("DISK").Select(d => d.Element("IMAGE_ID")?.Value).OfType<string>())
                    if (_s.Images.FirstOrDefault(i => i.Id.ToString(CultureInfo.InvariantCulture) == imageId) is { Vms.Count: 0 } img) DropImage(img);
            _s.Templates.Remove(tpl);
            Save();
            return id;
        }
    }
}
