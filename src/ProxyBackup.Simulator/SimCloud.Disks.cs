using System.Globalization;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>Disk snapshots, save-as, attach and detach: the operations the backup flow drives.</summary>
public sealed partial class SimCloud
{
    private static readonly string[] LiveSnapshotTms = ["qcow2", "shared", "ceph", "ssh", "local"];

    private static string Name(SimVm vm) => OneStateNames.Describe(vm.State, vm.Lcm);

    private static XElement DiskOrThrow(SimVm vm, int diskId, OneErrorCode code = OneErrorCode.Action) =>
        vm.Disk(diskId) ?? throw new SimFailure(code, "VM disk does not exist.", vm.Id);

    public int DiskSnapshotCreate(int vmId, int diskId, string name, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var disk = DiskOrThrow(vm, diskId);
            if (vm.Template.Element("BACKUP_CONFIG")?.Element("MODE")?.Value == "INCREMENT")
                throw new SimFailure(OneErrorCode.Action, "Disk snapshots are not compatible with incremental backups.", vmId);
            if (disk.Element("IMAGE_ID") is null) throw new SimFailure(OneErrorCode.Action, "Cannot make snapshots on volatile disks.", vmId);
            if (Yes(disk, "READONLY")) throw new SimFailure(OneErrorCode.Action, "Cannot make snapshots on readonly disks.", vmId);
            var transient = (vm.State, vm.Lcm) switch
            {
                (VmState.Active, LcmState.Running) => LcmState.DiskSnapshot,
                (VmState.Poweroff, _) => LcmState.DiskSnapshotPoweroff,
                (VmState.Suspended, _) => LcmState.DiskSnapshotSuspended,
                _ => throw new SimFailure(OneErrorCode.Action, $"Could not create a new snapshot for VM {vmId}, wrong state {Name(vm)}.", vmId),
            };
            var live = transient == LcmState.DiskSnapshot;
            var tm = disk.Element("TM_MAD")?.Value ?? "";
            var set = vm.SnapshotsOf(diskId);
            var mode = AllowOrphansOf(vm, diskId);
            // Where a new snapshot hangs (docs/opennebula.md, "Snapshot delete rules"): under the active one in a
            // tree (NO), under the current base in MIXED, nowhere in a flat set (YES).
            var parent = mode switch { "YES" => -1, "MIXED" => set.CurrentBase, _ => set.Snapshots.FirstOrDefault(s => s.Active)?.Id ?? -1 };
            var snap = new SimSnapshot { Id = set.NextSnapshot++, Name = name, Date = Now, Parent = parent, SizeMb = LongAttr(disk, "SIZE") };
            set.Snapshots.Add(snap);
            // A running guest goes on writing: the data is of this instant; a stopped one's is of when it stopped.
            vm.SnapshotMoments.Add(new SimSnapshotMoment(diskId, snap.Id, name, live ? DateTimeOffset.UtcNow : vm.GuestStoppedAt ?? DateTimeOffset.UtcNow));
            Enter(vm, transient);
            disk.SetElementValue("DISK_SNAPSHOT_ACTIVE", "YES");
            disk.SetElementValue("DISK_SNAPSHOT_ID", snap.Id);
            // The snapshot holds the disk as it is at this moment; the VM may go on writing.
            SimFiles.CopySparse(DiskFile(vm, disk), SnapshotFile(vmId, diskId, snap.Id));
            var refused = live && !LiveSnapshotTms.Contains(tm);
            Save();
            Later(SimOperation.SnapshotCreate, refused ? OpOutcome.FailAsync : outcome,
                onSuccess: () =>
                {
                    // In MIXED (Ceph) the disk goes on from its base: a new snapshot does not become the active one.
                    if (mode != "MIXED")
                        foreach (var s in set.Snapshots) s.Active = s == snap;
                    EndSnapshotOp(vm, disk);
                },
                onFailure: () =>
                {
                    set.Snapshots.Remove(snap);
                    SimFiles.Delete(SnapshotFile(vmId, diskId, snap.Id));
                    EndSnapshotOp(vm, disk);
                    SetError(vm, refused ? "Cannot perform a live disk_snapshot_create operation" : $"Error creating snapshot of disk {diskId}");
                });
            return snap.Id;
        }
    }

    private static void EndSnapshotOp(SimVm vm, XElement disk)
    {
        disk.Element("DISK_SNAPSHOT_ACTIVE")?.Remove();
        disk.Element("DISK_SNAPSHOT_ID")?.Remove();
        Return(vm);
    }

    public int DiskSnapshotRevert(int vmId, int diskId, int snapId, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var disk = DiskOrThrow(vm, diskId);
            var set = vm.SnapshotsOf(diskId);
            var snap = set.Snapshots.FirstOrDefault(s => s.Id == snapId) ?? throw new SimFailure(OneErrorCode.Action, "Snapshot does not exist.", vmId);
            if (vm.State != VmState.Poweroff || vm.Lcm != LcmState.LcmInit)
                throw new SimFailure(OneErrorCode.Action, $"Could not revert to disk snapshot for VM {vmId}, wrong state {Name(vm)}.", vmId);
            Enter(vm, LcmState.DiskSnapshotRevertPoweroff);
            Save();
            Later(SimOperation.SnapshotRevert, outcome,
                onSuccess: () =>
                {
                    SimFiles.CopySparse(SnapshotFile(vmId, diskId, snapId), DiskFile(vm, disk));
                    foreach (var s in set.Snapshots) s.Active = s == snap;
                    if (AllowOrphansOf(vm, diskId) == "MIXED") set.CurrentBase = snapId;
                    Return(vm);
                },
                onFailure: () =>
                {
                    Return(vm);
                    SetError(vm, $"Error reverting disk {diskId} to snapshot {snapId}");
                });
            return vmId;
        }
    }

    public int DiskSnapshotDelete(int vmId, int diskId, int snapId, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var disk = DiskOrThrow(vm, diskId);
            var set = vm.SnapshotsOf(diskId);
            var snap = set.Snapshots.FirstOrDefault(s => s.Id == snapId) ?? throw new SimFailure(OneErrorCode.Action, "Snapshot does not exist.", vmId);
            var transient = (vm.State, vm.Lcm) switch
            {
                (VmState.Active, LcmState.Running) => LcmState.DiskSnapshotDelete,
                (VmState.Poweroff, _) => LcmState.DiskSnapshotDeletePoweroff,
                (VmState.Suspended, _) => LcmState.DiskSnapshotDeleteSuspended,
                _ => throw new SimFailure(OneErrorCode.Action, $"Could not delete disk snapshot from VM {vmId}, wrong state {Name(vm)}.", vmId),
            };
            if (DeleteRefusal(set, snap, AllowOrphansOf(vm, diskId), Yes(disk, "PERSISTENT")) is { } why)
                throw new SimFailure(OneErrorCode.Action, why, vmId);
            Enter(vm, transient);
            Save();
            Later(SimOperation.SnapshotDelete, outcome,
                onSuccess: () =>
                {
                    foreach (var child in set.Snapshots.Where(s => s.Parent == snapId)) child.Parent = snap.Parent;
                    set.Snapshots.Remove(snap);
                    // In a tree the disk goes on from the parent of the active snapshot it lost.
                    if (snap.Active && set.Snapshots.FirstOrDefault(s => s.Id == snap.Parent) is { } parent) parent.Active = true;
                    SimFiles.Delete(SnapshotFile(vmId, diskId, snapId));
                    Return(vm);
                },
                onFailure: () =>
                {
                    Return(vm);
                    SetError(vm, $"Error deleting snapshot {snapId} of disk {diskId}");
                });
            return vmId;
        }
    }

    /// <summary>oned's rules for deleting a VM disk snapshot, per ALLOW_ORPHANS mode (docs/opennebula.md, "Snapshot delete rules").</summary>
    private static string? DeleteRefusal(SimDiskSnapshots set, SimSnapshot snap, string mode, bool persistent)
    {
        var children = set.Snapshots.Where(s => s.Parent == snap.Id).ToList();
        switch (mode)
        {
            case "YES": return null;
            case "MIXED":
                if (snap.Active) return "Cannot delete the active snapshot.";
                return children.Count > 0 ? "Cannot delete snapshot with children." : null;
            default:
                if (persistent && snap.Id == 0) return "Cannot delete snapshot 0 for persistent disk images";
                if (children.Count > 1) return "Cannot delete snapshot with more than one child.";
                if (snap.Active && children.Count > 0) return "Cannot delete the active snapshot if it has children.";
                if (children.Count == 1 && (children[0].Active || set.Snapshots.Any(s => s.Parent == children[0].Id)))
                    return "Cannot delete snapshot: its child has children or is active.";
                if (snap.Parent >= 0 && set.Snapshots.Count(s => s.Parent == snap.Parent) > 1)
                    return "Cannot delete snapshot: its parent has more than one child.";
                return null;
        }
    }

    public int DiskSnapshotRename(int vmId, int diskId, int snapId, string name)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var snap = vm.SnapshotsOf(diskId).Snapshots.FirstOrDefault(s => s.Id == snapId) ?? throw new SimFailure(OneErrorCode.Action, "Snapshot does not exist.", vmId);
            snap.Name = name;
            Save();
            return vmId;
        }
    }

    public int DiskSaveAs(int vmId, int diskId, string imageName, string imageType, int snapId, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var disk = DiskOrThrow(vm, diskId, OneErrorCode.Internal);
            var transient = (vm.State, vm.Lcm) switch
            {
                (VmState.Active, LcmState.Running) => LcmState.HotplugSaveas,
                (VmState.Poweroff, _) => LcmState.HotplugSaveasPoweroff,
                (VmState.Suspended, _) => LcmState.HotplugSaveasSuspended,
                (VmState.Undeployed, _) => LcmState.HotplugSaveasUndeployed,
                (VmState.Stopped, _) => LcmState.HotplugSaveasStopped,
                _ => throw new SimFailure(OneErrorCode.Internal, "VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.", vmId),
            };
            var source = ImageOf(disk) ?? throw new SimFailure(OneErrorCode.Internal, "Cannot use DISK. DISK does not have a valid IMAGE_ID.", vmId);
            if (source.Type is ImageType.Kernel or ImageType.Ramdisk or ImageType.Context or ImageType.Backup)
                throw new SimFailure(OneErrorCode.Internal, $"Cannot save disk of type {source.Type.ToString().ToUpperInvariant()}.", vmId);
            if (snapId != -1 && vm.SnapshotsOf(diskId).Snapshots.All(s => s.Id != snapId))
                throw new SimFailure(OneErrorCode.Internal, "Snapshot does not exist.", vmId);
            var type = imageType.Length == 0 ? source.Type
                : Enum.TryParse<ImageType>(imageType, ignoreCase: true, out var t) ? t
                : throw new SimFailure(OneErrorCode.Internal, $"Wrong image type: {imageType}.", vmId);
            var size = LongAttr(disk, "SIZE");
            var ds = Datastore(source.DatastoreId)!;
            CheckNewImage(imageName, ds, size);
            var image = NewImage(imageName, type, size, ds.Id, source.Format, persistent: false);
            image.Template["SAVED_IMAGE_ID"] = source.Id.ToString(CultureInfo.InvariantCulture);
            image.Template["SAVED_DISK_ID"] = diskId.ToString(CultureInfo.InvariantCulture);
            image.Template["SAVED_VM_ID"] = vmId.ToString(CultureInfo.InvariantCulture);
            image.Template["SAVE_AS_HOT"] = "YES";
            foreach (var k in new[] { "DEV_PREFIX", "TARGET" })
                if (source.Template.TryGetValue(k, out var v)) image.Template[k] = v;
            Enter(vm, transient);
            disk.SetElementValue("HOTPLUG_SAVE_AS", image.Id);
            disk.SetElementValue("HOTPLUG_SAVE_AS_ACTIVE", "YES");
            disk.SetElementValue("HOTPLUG_SAVE_AS_SOURCE", ImageFile(image.Id));
            disk.SetElementValue("HOTPLUG_SAVE_AS_SNAPSHOT_ID", snapId);
            var from = snapId == -1 ? DiskFile(vm, disk) : SnapshotFile(vmId, diskId, snapId);
            Save();
            Later(SimOperation.SaveAs, outcome,
                onSuccess: () =>
                {
                    image.Template.Remove("SAVE_AS_HOT");
                    SetImageState(image, ImageState.Ready);
                    ClearSaveAsFlags(disk);
                    Return(vm);
                },
                onFailure: () =>
                {
                    SetImageState(image, ImageState.Error);
                    ClearSaveAsFlags(disk);
                    Return(vm);
                    // oned leaves the image's ERROR empty here: the driver's message is on the VM (docs/opennebula.md, "Save-as").
                    SetError(vm, $"Error executing image transfer script: cannot copy disk {diskId} to image {image.Id}");
                },
                slowWork: () => SimFiles.CopySparse(from, ImageFile(image.Id)));
            return image.Id;
        }
    }

    private static void ClearSaveAsFlags(XElement disk)
    {
        foreach (var n in new[] { "HOTPLUG_SAVE_AS", "HOTPLUG_SAVE_AS_ACTIVE", "HOTPLUG_SAVE_AS_SOURCE", "HOTPLUG_SAVE_AS_SNAPSHOT_ID" })
            disk.Element(n)?.Remove();
    }

    public int Attach(int vmId, string diskTemplate, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var transient = (vm.State, vm.Lcm) switch
            {
                (VmState.Active, LcmState.Running) => LcmState.Hotplug,
                (VmState.Poweroff, _) => LcmState.HotplugPrologPoweroff,
                _ => throw new SimFailure(OneErrorCode.Action, $"Could not attach a new disk to VM {vmId}, wrong state {Name(vm)}.", vmId),
            };
            if (vm.History.Count == 0) throw new SimFailure(OneErrorCode.Action, "VM is not running in any host.", vmId);
            XElement request;
            try { request = TemplateParser.Parse(diskTemplate); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message, vmId); }
            var spec = request.Elements("DISK").SingleOrDefault()
                ?? throw new SimFailure(OneErrorCode.Action, "Wrong number of DISK attributes in the template.", vmId);
            var nextId = vm.Disks.Select(DiskId).Append(ContextDiskId(vm)).DefaultIfEmpty(-1).Max() + 1;
            var disk = BuildDisk(vm, spec, nextId, attaching: true, vmId);
            // oned's acquire_image: the image's datastore must be in the cluster of the VM's host.
            var hostCluster = vm.History[^1].ClusterId;
            if (ImageOf(disk) is { } attached && Datastore(attached.DatastoreId) is { } store && !store.Clusters.Contains(hostCluster))
            {
                ReleaseImage(vm, disk);
                throw new SimFailure(OneErrorCode.Action, $"Image [{attached.Id}] is not part of cluster [{hostCluster}]", vmId);
            }
            disk.SetElementValue("ATTACH", "YES");
            vm.Template.Add(disk);
            Enter(vm, transient);
            Save();
            var image = ImageOf(disk);
            var file = DiskFile(vm, disk);
            void Failed(string? why)
            {
                ReleaseImage(vm, disk);
                disk.Remove();
                SimFiles.Delete(Path.Combine(VmDir(vm.Id), $"disk.{DiskId(disk)}.raw"));
                Return(vm);
                SetError(vm, $"Error attaching new DISK to VM {vmId}: image {image?.Id}{why}");
            }
            Later(SimOperation.Attach, outcome,
                onSuccess: () =>
                {
                    if (IsProxy(vm))
                    {
                        // The hypervisor side can fail too (losetup, QEMU gone): the attach fails as a driver failure.
                        try { vm.Devices[DiskId(disk)] = ProxyDisks.Expose(file, Yes(disk, "READONLY"), vm.Id); }
                        catch (Exception e) when (e is IOException or QmpException or TimeoutException)
                        {
                            Failed($": {e.Message}");
                            return;
                        }
                    }
                    disk.Element("ATTACH")?.Remove();
                    Return(vm);
                },
                onFailure: () => Failed(null),
                slowWork: () => PrepareDiskData(vm, disk, image));
            return vmId;
        }
    }

    private static int ContextDiskId(SimVm vm) =>
        vm.Template.Element("CONTEXT")?.Element("DISK_ID") is { } e ? int.Parse(e.Value, CultureInfo.InvariantCulture) : -1;

    public int Detach(int vmId, int diskId, OpOutcome outcome)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var transient = (vm.State, vm.Lcm) switch
            {
                (VmState.Active, LcmState.Running) => LcmState.Hotplug,
                (VmState.Poweroff, _) => LcmState.HotplugEpilogPoweroff,
                _ => throw new SimFailure(OneErrorCode.Action, $"Could not detach disk from VM {vmId}, wrong state {Name(vm)}.", vmId),
            };
            var disk = DiskOrThrow(vm, diskId);
            disk.SetElementValue("ATTACH", "YES");
            Enter(vm, transient);
            Save();
            vm.Devices.TryGetValue(diskId, out var device);
            Later(SimOperation.Detach, outcome,
                onSuccess: () =>
                {
                    // virsh detach-disk fails while the guest still holds the device (docs/opennebula.md, "Hotplug").
                    string? refused;
                    try { refused = device is null ? null : ProxyDisks.TryRelease(device); }
                    catch (Exception e) when (e is IOException or QmpException or TimeoutException) { refused = e.Message; }
                    if (refused is not null)
                    {
                        disk.Element("ATTACH")?.Remove();
                        Return(vm);
                        SetError(vm, $"Error detaching DISK {diskId}: {refused}");
                        return;
                    }
                    vm.Devices.Remove(diskId);
                    ReleaseImage(vm, disk);
                    if (!Yes(disk, "PERSISTENT")) SimFiles.Delete(DiskFile(vm, disk));
                    disk.Remove();
                    Return(vm);
                },
                onFailure: () =>
                {
                    disk.Element("ATTACH")?.Remove();
                    Return(vm);
                    SetError(vm, $"Error detaching DISK {diskId}");
                });
            return vmId;
        }
    }

    /// <summary>
    /// A DISK as oned fills it in (from the request and the image), with the image acquired.
    /// Refusals are ACTION on attach and INTERNAL at VM creation, as in oned.
    /// </summary>
    private XElement BuildDisk(SimVm vm, XElement spec, int diskId, bool attaching, int objectId)
    {
        var code = attaching ? OneErrorCode.Action : OneErrorCode.Internal;
        var disk = new XElement("DISK", new XElement("DISK_ID", diskId));
        var imageIdText = spec.Element("IMAGE_ID")?.Value;
        SimImage? image = null;
        if (imageIdText is not null)
        {
            if (!int.TryParse(imageIdText, out var imageId)) throw new SimFailure(code, $"Wrong IMAGE_ID: {imageIdText}.", objectId);
            image = _s.Images.FirstOrDefault(i => i.Id == imageId) ?? throw new SimFailure(code, $"Error getting image [{imageId}].", objectId);
        }
        else if (spec.Element("IMAGE")?.Value is { } imageName)
        {
            image = _s.Images.FirstOrDefault(i => i.Name == imageName) ?? throw new SimFailure(code, $"Error getting image named {imageName}.", objectId);
        }
        var usedTargets = vm.Disks.Select(d => d.Element("TARGET")?.Value).Append(vm.Template.Element("CONTEXT")?.Element("TARGET")?.Value).OfType<string>().ToHashSet();
        if (image is null)
        {
            var type = spec.Element("TYPE")?.Value ?? "fs";
            disk.Add(new XElement("TYPE", type), new XElement("SIZE", spec.Element("SIZE")?.Value ?? "1024"), new XElement("FORMAT", spec.Element("FORMAT")?.Value ?? "raw"),
                new XElement("TARGET", Target(spec, null, usedTargets, code, objectId)), new XElement("DEV_PREFIX", spec.Element("DEV_PREFIX")?.Value ?? "vd"));
            return disk;
        }
        if (image.Type is not (ImageType.Os or ImageType.Datablock or ImageType.Cdrom))
            throw new SimFailure(code, $"Cannot acquire image {image.Id}, type {image.Type.ToString().ToUpperInvariant()} cannot be used as a disk.", objectId);
        switch (image.State)
        {
            case ImageState.Ready or ImageState.Used:
                break;
            case ImageState.UsedPers:
                throw new SimFailure(code, $"Cannot acquire image {image.Id}, it is already in use.", objectId);
            case ImageState.Locked:
                if (attaching) throw new SimFailure(code, $"Cannot acquire image {image.Id}, it is locked.", objectId);
                break;
            default:
                throw new SimFailure(code, $"Cannot acquire image {image.Id}, it is in state {OneStateNames.Describe(image.State)}.", objectId);
        }
        var ds = Datastore(image.DatastoreId)!;
        var readOnly = image.Type == ImageType.Cdrom || string.Equals(spec.Element("READONLY")?.Value, "YES", StringComparison.OrdinalIgnoreCase);
        disk.Add(new XElement("ALLOW_ORPHANS", ds.AllowOrphans), new XElement("CLONE", image.Persistent ? "NO" : "YES"),
            new XElement("CLONE_TARGET", "SYSTEM"), new XElement("CLUSTER_ID", 0), new XElement("DATASTORE", ds.Name),
            new XElement("DATASTORE_ID", ds.Id), new XElement("DEV_PREFIX", spec.Element("DEV_PREFIX")?.Value ?? image.Template.GetValueOrDefault("DEV_PREFIX", "sd")),
            new XElement("DISK_TYPE", "FILE"), new XElement("DRIVER", image.Format), new XElement("FORMAT", image.Format),
            new XElement("IMAGE", image.Name), new XElement("IMAGE_ID", image.Id), new XElement("IMAGE_UNAME", UserName(image.Uid)),
            new XElement("LN_TARGET", "NONE"), new XElement("ORIGINAL_SIZE", image.SizeMb), new XElement("READONLY", readOnly ? "YES" : "NO"),
            new XElement("SAVE", image.Persistent ? "YES" : "NO"), new XElement("SIZE", image.SizeMb), new XElement("SOURCE", ImageFile(image.Id)),
            new XElement("TARGET", Target(spec, image, usedTargets, code, objectId)), new XElement("TM_MAD", ds.TmMad), new XElement("TYPE", image.Type == ImageType.Cdrom ? "CDROM" : "FILE"));
        if (image.Persistent) disk.Add(new XElement("PERSISTENT", "YES"));
        if (spec.Element("SERIAL")?.Value is { } serial) disk.Add(new XElement("SERIAL", serial));
        foreach (var extra in new[] { "CACHE", "DISCARD", "IO" })
            if (spec.Element(extra)?.Value is { } v) disk.Add(new XElement(extra, v));
        AcquireImage(vm, image);
        return disk;
    }

    /// <summary>docs/opennebula.md, "Target names": explicit TARGET, else the image's TARGET, else the first free &lt;prefix&gt;&lt;letters&gt;.</summary>
    private static string Target(XElement spec, SimImage? image, HashSet<string> used, OneErrorCode code, int objectId)
    {
        var explicitTarget = spec.Element("TARGET")?.Value ?? image?.Template.GetValueOrDefault("TARGET");
        if (explicitTarget is not null)
        {
            if (used.Contains(explicitTarget)) throw new SimFailure(code, $"Target {explicitTarget} is already in use.", objectId);
            return explicitTarget;
        }
        var prefix = spec.Element("DEV_PREFIX")?.Value ?? image?.Template.GetValueOrDefault("DEV_PREFIX") ?? (image?.Type == ImageType.Cdrom ? "hd" : "sd");
        for (var i = 0; i < 26 * 27; i++)
        {
            var letters = i < 26 ? ((char)('a' + i)).ToString() : $"{(char)('a' + i / 26 - 1)}{(char)('a' + i % 26)}";
            if (!used.Contains(prefix + letters)) return prefix + letters;
        }
        throw new SimFailure(code, "No free target.", objectId);
    }

    private void AcquireImage(SimVm vm, SimImage image)
    {
        image.Vms.Add(vm.Id);
        if (image.State is ImageState.Locked) SetImageState(image, image.Persistent ? ImageState.LockedUsedPers : ImageState.LockedUsed);
        else SetImageState(image, image.Persistent ? ImageState.UsedPers : ImageState.Used);
    }

    private void ReleaseImage(SimVm vm, XElement disk)
    {
        if (ImageOf(disk) is not { } image) return;
        image.Vms.Remove(vm.Id);
        if (image.Vms.Count == 0 && image.State is ImageState.Used or ImageState.UsedPers) SetImageState(image, ImageState.Ready);
    }

    /// <summary>The data a VM's disk starts with: a clone of a non-persistent image, zeros for a volatile disk.</summary>
    private void PrepareDiskData(SimVm vm, XElement disk, SimImage? image)
    {
        var file = DiskFile(vm, disk);
        if (image is null) SimFiles.CreateSparse(file, LongAttr(disk, "SIZE") * MiB);
        else if (!image.Persistent) SimFiles.CopySparse(ImageFile(image.Id), file);
    }
}
