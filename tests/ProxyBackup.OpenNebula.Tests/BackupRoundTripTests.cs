namespace ProxyBackup.OpenNebula.Tests;

/// <summary>The whole disk-attachment road through the client against the simulator, as the engine will drive it.</summary>
public class BackupRoundTripTests
{
    [Fact]
    public async Task Snapshot_saveas_attach_read_detach_delete_leaves_nothing_behind()
    {
        // Operations last long enough here to observe each transient state and a refusal during it.
        await using var cloud = await SimulatedCloud.StartAsync(opMs: 250);
        var client = cloud.Client;
        var before = cloud.Server.Cloud.Inventory();
        var web = await cloud.VmNamedAsync("web-01");
        var proxy = await cloud.ProxyAsync();
        var diskFile = cloud.Server.Cloud.DiskContentPath(web.Id, 1);
        var atSnapshot = SimulatedCloud.Sha256OfFile(diskFile);

        // 1. Snapshot: the VM passes through DISK_SNAPSHOT and a second operation is refused meanwhile.
        // The simulator holds the transient state until the checks are done (a loaded machine can outrun a timed one).
        int snapId;
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            snapId = await client.VmDiskSnapshotCreateAsync(web.Id, 1, "pb-test");
            var during = await client.VmInfoAsync(web.Id);
            Assert.Equal(LcmState.DiskSnapshot, during.LcmState);
            var refused = await Assert.ThrowsAsync<OneInternalException>(() => client.VmDiskSaveAsAsync(web.Id, 1, "too-early", "", snapId));
            Assert.Contains("VM has to be RUNNING, POWEROFF or SUSPENDED to save disks.", refused.Message, StringComparison.Ordinal);
        }
        var afterSnap = await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Contains(afterSnap.SnapshotsOf(1), s => s.Id == snapId && s.Active && s.Name == "pb-test");

        // The guest keeps writing after the snapshot: the backup must still see the snapshot's content.
        cloud.Server.Cloud.MutateDisk(web.Id, 1, blocks: 8, blockSize: 4096, seed: 1);
        Assert.NotEqual(atSnapshot, SimulatedCloud.Sha256OfFile(diskFile));

        // 2. Save the snapshot as an image.
        int imageId;
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            imageId = await client.VmDiskSaveAsAsync(web.Id, 1, $"pb-{web.Id}-d1-test", "", snapId);
            Assert.Equal(LcmState.HotplugSaveas, (await client.VmInfoAsync(web.Id)).LcmState);
            Assert.Equal(ImageState.Locked, (await client.ImageInfoAsync(imageId)).State);
        }
        var image = await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);
        Assert.Equal(web.Disk(1)!.SizeMb, image.SizeMb);
        Assert.Equal(web.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), image.Template.Text("SAVED_VM_ID"));
        await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);

        // 3. Attach it to the proxy read-only with an sd prefix; find the disk by IMAGE_ID, the device by a before/after scan.
        var devicesBefore = cloud.DeviceNames();
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            var attachReply = await client.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", imageId), new("DEV_PREFIX", "sd"), new("READONLY", "YES")]));
            Assert.Equal(proxy.Id, attachReply); // attach returns the VM id, not the disk id
            Assert.Equal(LcmState.Hotplug, (await client.VmInfoAsync(proxy.Id)).LcmState);
        }
        var proxyAfter = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        var attached = proxyAfter.Disks.Single(d => d.ImageId == imageId);
        Assert.StartsWith("sd", attached.Target, StringComparison.Ordinal);
        Assert.Equal(ImageState.Used, (await client.ImageInfoAsync(imageId)).State);
        var newDevice = Assert.Single(cloud.DeviceNames().Except(devicesBefore));

        // 4. Read the block device: it holds the snapshot's content, not the disk's current content.
        var devicePath = Path.Combine(cloud.DevicesDirectory, newDevice);
        Assert.Equal(atSnapshot, SimulatedCloud.Sha256OfFile(devicePath));
        if (cloud.Server.Cloud.Devices.UsesLoopDevices)
            Assert.StartsWith("/dev/loop", new FileInfo(devicePath).LinkTarget, StringComparison.Ordinal);

        // 5. Detach, delete the temporary image, delete the snapshot.
        var detached = await cloud.DetachFromProxyAsync(proxy.Id, attached.DiskId);
        Assert.DoesNotContain(detached.Disks, d => d.ImageId == imageId);
        Assert.DoesNotContain(newDevice, cloud.DeviceNames());
        await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);
        await client.ImageDeleteAsync(imageId);
        await cloud.Waiter.ImageGoneAsync(imageId, SimulatedCloud.Timeout);
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            await client.VmDiskSnapshotDeleteAsync(web.Id, 1, snapId);
            Assert.Equal(LcmState.DiskSnapshotDelete, (await client.VmInfoAsync(web.Id)).LcmState);
        }
        var end = await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Empty(end.SnapshotsOf(1));

        Assert.Equal(before, cloud.Server.Cloud.Inventory());
    }

    [Fact]
    public async Task Restore_writes_through_a_persistent_image_and_a_new_vm_boots_from_it()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var client = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var template = new OneTemplate().Set("NAME", "pb-restore-test-d0").Set("TYPE", "DATABLOCK").Set("SIZE", 2).Set("PERSISTENT", "YES").Set("DEV_PREFIX", "vd");
        var imageId = await client.ImageAllocateAsync(template, 1);
        var image = await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);
        Assert.True(image.Persistent);

        var before = cloud.DeviceNames();
        await client.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", imageId), new("DEV_PREFIX", "sd")]));
        var p = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        Assert.Equal(ImageState.UsedPers, (await client.ImageInfoAsync(imageId)).State);
        var device = Path.Combine(cloud.DevicesDirectory, Assert.Single(cloud.DeviceNames().Except(before)));
        var payload = new byte[2 << 20];
        Random.Shared.NextBytes(payload);
        await using (var f = new FileStream(device, FileMode.Open, FileAccess.Write))
        {
            await f.WriteAsync(payload);
            await f.FlushAsync();
            f.Flush(flushToDisk: true);
        }
        await cloud.DetachFromProxyAsync(proxy.Id, p.Disks.Single(d => d.ImageId == imageId).DiskId);
        await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);

        var vmTemplate = new OneTemplate().Set("NAME", "restored").Set("CPU", 1).Set("MEMORY", 512).AddVector("DISK", [new("IMAGE_ID", imageId)]);
        var tid = await client.TemplateAllocateAsync(vmTemplate);
        var vmId = await client.TemplateInstantiateAsync(tid, "restored-vm", hold: false, extra: null);
        await client.TemplateDeleteAsync(tid);
        var vm = await cloud.Waiter.VmRunningAsync(vmId, SimulatedCloud.Timeout);
        Assert.Equal("restored-vm", vm.Name);
        var restoredFile = cloud.Server.Cloud.DiskContentPath(vmId, 0);
        Assert.Equal(payload, await File.ReadAllBytesAsync(restoredFile));
        Assert.Equal(ImageState.UsedPers, (await client.ImageInfoAsync(imageId)).State);
        var stillUsed = await Assert.ThrowsAsync<OneActionException>(() => client.ImageDeleteAsync(imageId));
        Assert.Equal("[one.image.delete] Cannot delete image. There are 1 VMs using it.", stillUsed.Message);
    }
}
