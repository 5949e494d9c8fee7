using System.Text;
using ProxyBackup.Simulator;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>Refusals, state sequences and wire shapes the simulator must share with oned 6.10.</summary>
public class SimulatorBehaviourTests
{
    [Fact]
    public async Task Errors_map_to_typed_exceptions_with_onedes_text()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var missing = await Assert.ThrowsAsync<OneNotFoundException>(() => cloud.Client.VmInfoAsync(99999));
        Assert.Equal("[one.vm.info] Error getting virtual machine [99999].", missing.Message);
        Assert.Equal(99999, missing.ObjectId);
        using var wrong = SimulatedCloud.NewClient(cloud.Server.Endpoint, "wrong-password");
        var auth = await Assert.ThrowsAsync<OneAuthenticationException>(() => wrong.SystemVersionAsync());
        Assert.Equal("[one.system.version] User couldn't be authenticated, aborting call.", auth.Message);
        Assert.Equal("6.10.5", await cloud.Client.SystemVersionAsync());
    }

    [Fact]
    public async Task Wire_replies_match_the_captured_oned_replies()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        using var http = new HttpClient();
        async Task<string> Raw(string body) =>
            await (await http.PostAsync(cloud.Server.Endpoint, new StringContent(body, Encoding.UTF8, "text/xml"))).Content.ReadAsStringAsync();
        static string Call(string method, string args) =>
            $"<?xml version=\"1.0\"?><methodCall><methodName>{method}</methodName><params><param><value><string>oneadmin:{SimulatedCloud.Password}</string></value></param>{args}</params></methodCall>";

        var failure = await Raw(Call("one.vm.info", "<param><value><int>99999</int></value></param>"));
        Assert.Contains("<value><i8>-1</i8></value>", failure, StringComparison.Ordinal);
        var expected = XmlRpcReader.ParseResponse(File.OpenRead(TestSupport.Fixtures.Path("wire_failure_vm_info.xml")));
        Assert.Equal(expected, XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(failure))));

        var wrongType = await Raw(Call("one.vm.info", "<param><value><string>42</string></value></param>"));
        var fault = Assert.Throws<XmlRpcFaultException>(() => XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(wrongType))));
        Assert.Equal(-501, fault.FaultCode);
        Assert.Equal("Parameter that is supposed to be integer is not", fault.FaultString);

        var unknown = await Raw(Call("one.vm.frobnicate", ""));
        Assert.Equal(-506, Assert.Throws<XmlRpcFaultException>(() => XmlRpcReader.ParseResponse(new MemoryStream(Encoding.UTF8.GetBytes(unknown)))).FaultCode);

        var info = await Raw(Call("one.vm.info", "<param><value><int>1</int></value></param>"));
        Assert.Contains("&lt;![CDATA[", info, StringComparison.Ordinal); // template values travel as CDATA, escaped once more
    }

    [Fact]
    public async Task Operations_refused_in_the_wrong_state_or_on_the_wrong_disk()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var db = await cloud.VmNamedAsync("db-01");
        var swap = db.Disks.Single(d => d.IsVolatile);
        var vol = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotCreateAsync(db.Id, swap.DiskId, ""));
        Assert.Contains("Cannot make snapshots on volatile disks", vol.Message, StringComparison.Ordinal);
        var saveVol = await Assert.ThrowsAsync<OneInternalException>(() => c.VmDiskSaveAsAsync(db.Id, swap.DiskId, "x", "", -1));
        Assert.Contains("does not have a valid IMAGE_ID", saveVol.Message, StringComparison.Ordinal);
        var noDisk = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotCreateAsync(db.Id, 42, ""));
        Assert.Contains("VM disk does not exist", noDisk.Message, StringComparison.Ordinal);

        int snap;
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            snap = await c.VmDiskSnapshotCreateAsync(db.Id, 0, "s1");
            var busy = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotCreateAsync(db.Id, 1, "s2"));
            Assert.Contains($"wrong state DISK_SNAPSHOT", busy.Message, StringComparison.Ordinal);
        }
        await cloud.Waiter.VmSettledAsync(db.Id, SimulatedCloud.Timeout);
        var revert = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotRevertAsync(db.Id, 0, snap));
        Assert.Contains("wrong state RUNNING", revert.Message, StringComparison.Ordinal);

        var dup = await Assert.ThrowsAsync<OneAllocateException>(() => c.VmDiskSaveAsAsync(db.Id, 0, "debian12", "", snap));
        Assert.Contains("NAME is already taken by IMAGE", dup.Message, StringComparison.Ordinal);
        var badName = await Assert.ThrowsAsync<OneAllocateException>(() => c.VmDiskSaveAsAsync(db.Id, 0, "pb:12:00", "", snap));
        Assert.Contains("invalid characters", badName.Message, StringComparison.Ordinal);
        var noSnap = await Assert.ThrowsAsync<OneInternalException>(() => c.VmDiskSaveAsAsync(db.Id, 0, "pb-x", "", 77));
        Assert.Contains("Snapshot does not exist", noSnap.Message, StringComparison.Ordinal);

        // A save-as image is LOCKED while copying: attaching it then is refused.
        var proxy = await cloud.ProxyAsync();
        int img;
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            img = await c.VmDiskSaveAsAsync(db.Id, 0, "pb-locked", "", snap);
            var lockedAttach = await Assert.ThrowsAsync<OneActionException>(() => c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", img)])));
            Assert.Contains($"Cannot acquire image {img}, it is locked", lockedAttach.Message, StringComparison.Ordinal);
            var lockedDelete = await Assert.ThrowsAsync<OneInternalException>(() => c.ImageDeleteAsync(img));
            Assert.Contains("use --force", lockedDelete.Message, StringComparison.Ordinal);
        }
        await cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout);

        var unknownAction = await Assert.ThrowsAsync<OneActionException>(() => c.VmActionAsync("fly", db.Id));
        Assert.Contains("Action \"fly\" is not supported", unknownAction.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Revert_needs_poweroff_and_restores_the_snapshot_content()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var web = await cloud.VmNamedAsync("web-01");
        var file = cloud.Server.Cloud.DiskContentPath(web.Id, 0);
        var original = SimulatedCloud.Sha256OfFile(file);
        var snap = await c.VmDiskSnapshotCreateAsync(web.Id, 0, "before");
        await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        cloud.Server.Cloud.MutateDisk(web.Id, 0, 16, 4096, 3);
        Assert.NotEqual(original, SimulatedCloud.Sha256OfFile(file));

        await c.VmActionAsync("poweroff", web.Id);
        var off = await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Equal(VmState.Poweroff, off.State);
        using (cloud.Server.Cloud.HoldTransientStates())
        {
            await c.VmDiskSnapshotRevertAsync(web.Id, 0, snap);
            Assert.Equal(LcmState.DiskSnapshotRevertPoweroff, (await c.VmInfoAsync(web.Id)).LcmState);
        }
        await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Equal(original, SimulatedCloud.Sha256OfFile(file));
        await c.VmActionAsync("resume", web.Id);
        var back = await cloud.Waiter.VmRunningAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Equal(LcmState.Running, back.LcmState);
    }

    [Fact]
    public async Task Snapshot_delete_follows_the_orphan_rules()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var web = await cloud.VmNamedAsync("web-01");
        // raw disks on a FORMAT datastore resolve to YES: a flat set, every snapshot deletable.
        await cloud.Server.Cloud.WaitIdleAsync(SimulatedCloud.Timeout);
        var s0 = await SettledSnapshotAsync(cloud, web.Id, 0, "a");
        var s1 = await SettledSnapshotAsync(cloud, web.Id, 0, "b");
        var vm = await c.VmInfoAsync(web.Id);
        Assert.Equal("YES", vm.Snapshots.Single(s => s.DiskId == 0).AllowOrphans);
        Assert.All(vm.SnapshotsOf(0), s => Assert.Equal((-1, 0), (s.Parent, s.Children.Count)));
        Assert.True(vm.SnapshotsOf(0).Single(s => s.Id == s1).Active);
        await c.VmDiskSnapshotDeleteAsync(web.Id, 0, s1);
        await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Equal(s0, Assert.Single((await c.VmInfoAsync(web.Id)).SnapshotsOf(0)).Id);

        // In a tree (NO) a snapshot hangs under the active one, and one with a child that has a child stays.
        cloud.Server.Cloud.DatastoreUpdate(web.Disks[0].DatastoreId!.Value, "ALLOW_ORPHANS = \"NO\"", 1);
        var t1 = await SettledSnapshotAsync(cloud, web.Id, 0, "c");
        var t2 = await SettledSnapshotAsync(cloud, web.Id, 0, "d");
        vm = await c.VmInfoAsync(web.Id);
        Assert.Equal(t1, vm.SnapshotsOf(0).Single(s => s.Id == t2).Parent);
        Assert.Contains(t2, vm.SnapshotsOf(0).Single(s => s.Id == t1).Children);
        await SettledSnapshotAsync(cloud, web.Id, 0, "e");
        var refused = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotDeleteAsync(web.Id, 0, t1));
        Assert.Contains("child", refused.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Snapshot_0_of_a_persistent_disk_stays_without_orphans_and_mixed_snapshots_do_not_become_active()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var db = await cloud.VmNamedAsync("db-01");
        var persistent = db.Disks.Single(d => d.Persistent);
        using (var rpc = new XmlRpcClient(new XmlRpcClientOptions { Endpoint = cloud.Server.Endpoint }))
            await rpc.CallAsync("one.datastore.update", new object?[] { "oneadmin:" + SimulatedCloud.Password, persistent.DatastoreId!.Value, "ALLOW_ORPHANS = \"NO\"", 1 });

        var s0 = await SettledSnapshotAsync(cloud, db.Id, persistent.DiskId, "first");
        // The mode set through the API is the one the disk's snapshots follow.
        Assert.Equal("NO", (await c.VmInfoAsync(db.Id)).Snapshots.Single(s => s.DiskId == persistent.DiskId).AllowOrphans);
        var s1 = await SettledSnapshotAsync(cloud, db.Id, persistent.DiskId, "second");
        var refused = await Assert.ThrowsAsync<OneActionException>(() => c.VmDiskSnapshotDeleteAsync(db.Id, persistent.DiskId, s0));
        Assert.Contains("Cannot delete snapshot 0 for persistent disk images", refused.Message, StringComparison.Ordinal);
        // The active leaf goes, and the disk goes on from its parent.
        await c.VmDiskSnapshotDeleteAsync(db.Id, persistent.DiskId, s1);
        await cloud.Waiter.VmSettledAsync(db.Id, SimulatedCloud.Timeout);
        Assert.True(Assert.Single((await c.VmInfoAsync(db.Id)).SnapshotsOf(persistent.DiskId)).Active);

        cloud.Server.Cloud.DatastoreUpdate(persistent.DatastoreId!.Value, "ALLOW_ORPHANS = \"MIXED\"", 1);
        var m = await SettledSnapshotAsync(cloud, db.Id, persistent.DiskId, "mixed");
        var snap = (await c.VmInfoAsync(db.Id)).SnapshotsOf(persistent.DiskId).Single(s => s.Id == m);
        Assert.False(snap.Active);
        Assert.Equal(-1, snap.Parent);
    }

    /// <summary>Takes a disk snapshot and waits until the VM has settled again; returns its ID.</summary>
    private static async Task<int> SettledSnapshotAsync(SimulatedCloud cloud, int vmId, int diskId, string name)
    {
        var id = await cloud.Client.VmDiskSnapshotCreateAsync(vmId, diskId, name);
        await cloud.Waiter.VmSettledAsync(vmId, SimulatedCloud.Timeout);
        return id;
    }

    [Fact]
    public async Task Detach_fails_while_the_guest_holds_the_device_open()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var imageId = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-held").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1);
        await cloud.Waiter.ImageReadyAsync(imageId, SimulatedCloud.Timeout);
        var before = cloud.DeviceNames();
        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", imageId), new("DEV_PREFIX", "sd")]));
        var p = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        var disk = p.Disks.Single(d => d.ImageId == imageId);
        var device = Path.Combine(cloud.DevicesDirectory, Assert.Single(cloud.DeviceNames().Except(before)));
        await using (new FileStream(device, FileMode.Open, FileAccess.Read))
        {
            await c.VmDetachAsync(proxy.Id, disk.DiskId);
            var still = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
            Assert.Contains(still.Disks, d => d.ImageId == imageId);
            // Who holds it, to find out: this test process.
            Assert.Contains($"device in use in the guest (pid {Environment.ProcessId} ", still.LastError, StringComparison.Ordinal);
            Assert.Equal(ImageState.Used, (await c.ImageInfoAsync(imageId)).State);
        }
        var done = await cloud.DetachFromProxyAsync(proxy.Id, disk.DiskId);
        Assert.DoesNotContain(done.Disks, d => d.ImageId == imageId);
        Assert.Equal(ImageState.Ready, (await c.ImageInfoAsync(imageId)).State);
    }

    [Fact]
    public async Task Disk_ids_and_targets_are_assigned_as_oned_does()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var contextDiskId = proxy.Template.Element("CONTEXT")!.Element("DISK_ID")!.Value;
        var img = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-t").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1);
        await cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout);
        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", img), new("DEV_PREFIX", "sd")]));
        var p = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        var d = p.Disks.Single(x => x.ImageId == img);
        Assert.Equal(int.Parse(contextDiskId, System.Globalization.CultureInfo.InvariantCulture) + 1, d.DiskId); // the context holds a disk id
        Assert.Equal("sda", d.Target); // the proxy's own disk is vda: sd letters are free
        var clash = await Assert.ThrowsAsync<OneActionException>(() =>
            c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", img), new("TARGET", "sda")])));
        Assert.Contains("Target sda is already in use", clash.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Pools_page_and_filter_like_oned()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var all = await cloud.Client.VmPoolAsync();
        Assert.Equal(4, all.Count);
        Assert.All(all, v => Assert.Null(v.Disks[0].Target));
        var page = await cloud.Client.VmPoolAsync(-2, 1, -2);
        Assert.Equal(all.Skip(1).Take(2).Select(v => v.Id), page.Select(v => v.Id));
        var extended = await cloud.Client.VmPoolExtendedAsync();
        Assert.Equal("gold", extended.Single(v => v.Name == "web-01").UserTemplate.Text("BACKUP_POLICY"));
        var set = await cloud.Client.VmPoolInfoSetAsync([all[0].Id, all[2].Id], extended: true);
        Assert.Equal(2, set.Count);
        var flag = await Assert.ThrowsAsync<OneException>(() => cloud.Client.VmPoolAsync(filter: -9));
        Assert.Equal(OneErrorCode.XmlRpcApi, flag.Code);
        Assert.NotEmpty(await cloud.Client.DatastorePoolAsync());
        Assert.Equal(2, (await cloud.Client.HostPoolAsync()).Count);
        Assert.Equal(4, (await cloud.Client.ImagePoolAsync()).Count);
        Assert.Equal("oneadmin", (await cloud.Client.UserInfoAsync()).Name);
        Assert.Equal("sd", (await cloud.Client.SystemConfigAsync()).Text("DEFAULT_DEVICE_PREFIX"));
    }

    [Fact]
    public async Task Login_tokens_authenticate_and_can_be_revoked()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var token = await cloud.Client.UserLoginAsync("oneadmin", "", 3600);
        using var withToken = new OneClient(new OneClientOptions { Endpoint = cloud.Server.Endpoint, Credentials = new OneCredentials("oneadmin", token) });
        Assert.Equal("6.10.5", await withToken.SystemVersionAsync());
        await cloud.Client.UserLoginAsync("oneadmin", token, 0);
        await Assert.ThrowsAsync<OneAuthenticationException>(() => withToken.SystemVersionAsync());
    }

    [Fact]
    public async Task Vm_lock_blocks_manage_operations_for_everybody()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var web = await cloud.VmNamedAsync("web-01");
        await cloud.Client.VmLockAsync(web.Id, 2);
        Assert.Equal(2, (await cloud.Client.VmInfoAsync(web.Id)).LockLevel);
        var e = await Assert.ThrowsAsync<OneAuthorizationException>(() => cloud.Client.VmDiskSnapshotCreateAsync(web.Id, 0, ""));
        Assert.Contains("is locked", e.Message, StringComparison.Ordinal);
        await cloud.Client.VmUnlockAsync(web.Id);
        await cloud.Client.VmDiskSnapshotCreateAsync(web.Id, 0, "");
    }

    [Fact]
    public async Task State_survives_a_restart_and_attached_devices_come_back()
    {
        var dir = new TestSupport.TempDirectory("pb-sim-restart");
        await using var cloud = await SimulatedCloud.StartAsync(reuse: dir);
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var img = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-keep").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1);
        await cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout);
        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", img), new("DEV_PREFIX", "sd")]));
        await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        var devices = cloud.DeviceNames();

        await cloud.RestartAsync();
        var again = await cloud.ProxyAsync();
        Assert.Contains(again.Disks, d => d.ImageId == img);
        Assert.Equal(devices, cloud.DeviceNames());
        foreach (var name in devices)
            Assert.True(File.Exists(Path.Combine(cloud.DevicesDirectory, name)), $"{name} does not resolve after the restart");
        Assert.Equal("pb-keep", (await cloud.Client.ImageInfoAsync(img)).Name);
    }
}

public class RemainingMethodsTests
{
    [Fact]
    public async Task Update_deploy_recover_and_info_calls()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var web = await cloud.VmNamedAsync("web-01");
        await c.VmUpdateAsync(web.Id, new OneTemplate().Set("BACKUP_POLICY", "silver"), merge: true);
        var updated = await c.VmInfoAsync(web.Id);
        Assert.Equal("silver", updated.UserTemplate.Text("BACKUP_POLICY"));
        Assert.Equal("prod,web", updated.UserTemplate.Text("LABELS")); // merge keeps the rest
        await c.VmUpdateAsync(web.Id, new OneTemplate().Set("ONLY", "this"), merge: false);
        Assert.Null((await c.VmInfoAsync(web.Id)).UserTemplate.Text("LABELS"));

        var held = await c.VmAllocateAsync(new OneTemplate().Set("NAME", "held").Set("CPU", 1).Set("MEMORY", 64), hold: true);
        Assert.Equal(VmState.Hold, (await c.VmInfoAsync(held)).State);
        await c.VmDeployAsync(held, hostId: 1, systemDatastoreId: 0);
        var deployed = await cloud.Waiter.VmRunningAsync(held, SimulatedCloud.Timeout);
        Assert.Equal("kvm-02", deployed.CurrentHistory!.HostName);

        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,nth=1,action=stuck")]);
        await c.VmDiskSnapshotCreateAsync(web.Id, 0, "stuck");
        Assert.Equal(LcmState.DiskSnapshot, (await c.VmInfoAsync(web.Id)).LcmState);
        await c.VmRecoverAsync(web.Id, 0); // failure: back to where it was
        Assert.Equal(LcmState.Running, (await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout)).LcmState);

        var img = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-upd").Set("TYPE", "DATABLOCK").Set("SIZE", 1).Set("TARGET", "vdz"), 1);
        await cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout);
        Assert.Equal("vdz", (await c.ImageInfoAsync(img)).Template.Text("TARGET"));
        await c.ImageUpdateAsync(img, new OneTemplate().Set("DEV_PREFIX", "sd"), merge: false);
        Assert.Null((await c.ImageInfoAsync(img)).Template.Text("TARGET"));
        await c.ImagePersistentAsync(img, true);
        Assert.True((await c.ImageInfoAsync(img)).Persistent);

        var tid = await c.TemplateAllocateAsync(new OneTemplate().Set("NAME", "tpl").Set("CPU", 1).Set("MEMORY", 64));
        Assert.Equal("tpl", (await c.TemplateInfoAsync(tid)).Name);
        var dup = await Assert.ThrowsAsync<OneInternalException>(() => c.TemplateAllocateAsync(new OneTemplate().Set("NAME", "tpl").Set("CPU", 1).Set("MEMORY", 64)));
        Assert.Contains("NAME is already taken by TEMPLATE", dup.Message, StringComparison.Ordinal);
        Assert.Single(await c.TemplatePoolAsync());
        await c.TemplateDeleteAsync(tid);
        await Assert.ThrowsAsync<OneNotFoundException>(() => c.TemplateInfoAsync(tid));

        Assert.Equal(DatastoreType.Image, (await c.DatastoreInfoAsync(1)).Type);
        Assert.Equal("kvm-01", (await c.HostInfoAsync(0)).Name);
        await Assert.ThrowsAsync<OneNotFoundException>(() => c.HostInfoAsync(99));

        await c.VmActionAsync("terminate-hard", held);
        var done = await cloud.Waiter.VmUntilAsync(held, "DONE", v => v.State == VmState.Done, SimulatedCloud.Timeout);
        Assert.Equal(VmSettlement.Gone, done.Settlement); // still readable, as in oned
        var refused = await Assert.ThrowsAsync<OneActionException>(() => c.VmActionAsync("suspend", held));
        Assert.Contains("wrong state DONE", refused.Message, StringComparison.Ordinal);
        await Assert.ThrowsAsync<OneOperationFailedException>(() => cloud.Waiter.VmSettledAsync(held, SimulatedCloud.Timeout));
    }
}
