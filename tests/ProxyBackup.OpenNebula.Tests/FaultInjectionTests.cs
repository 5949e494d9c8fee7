using ProxyBackup.Simulator;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>Each fault mode of the simulator, and how the client and waiters respond to it.</summary>
public class FaultInjectionTests
{
    [Fact]
    public async Task Nth_call_fails_with_the_configured_code()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.info,nth=2,action=error,code=2048,message=injected")]);
        await cloud.Client.VmInfoAsync(0);
        var e = await Assert.ThrowsAsync<OneActionException>(() => cloud.Client.VmInfoAsync(0));
        Assert.Equal("[one.vm.info] injected", e.Message);
        await cloud.Client.VmInfoAsync(0); // fired once only
    }

    [Fact]
    public async Task Reads_are_retried_across_a_dropped_connection()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.info,nth=1,action=drop-before")]);
        var vm = await cloud.Client.VmInfoAsync(0);
        Assert.Equal(0, vm.Id);
    }

    [Fact]
    public async Task A_create_whose_answer_is_lost_is_not_repeated()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        cloud.Server.Faults.Set([FaultRule.Parse("one.image.allocate,nth=1,action=drop-after")]);
        var before = (await cloud.Client.ImagePoolAsync()).Count;
        var e = await Assert.ThrowsAsync<XmlRpcTransportException>(() =>
            cloud.Client.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-lost").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1));
        Assert.True(e.RequestMayHaveBeenProcessed);
        // The image exists once: the client did not blindly create a second one.
        var images = await cloud.Client.ImagePoolAsync();
        Assert.Equal(before + 1, images.Count);
        Assert.Single(images, i => i.Name == "pb-lost");
    }

    [Fact]
    public async Task A_stuck_operation_ends_the_wait_with_the_last_state()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var web = await cloud.VmNamedAsync("web-01");
        cloud.Server.Faults.Set([new FaultRule { Method = "one.vm.disksnapshotcreate", Nth = 1, Action = FaultAction.Stuck }]);
        await cloud.Client.VmDiskSnapshotCreateAsync(web.Id, 0, "never-ends");
        var e = await Assert.ThrowsAsync<OneWaitTimeoutException>(() => cloud.Waiter.VmSettledAsync(web.Id, TimeSpan.FromMilliseconds(600)));
        Assert.Contains("DISK_SNAPSHOT", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task An_attach_that_fails_in_the_driver_adds_no_disk_and_sets_error()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var c = cloud.Client;
        var proxy = await cloud.ProxyAsync();
        var img = await c.ImageAllocateAsync(new OneTemplate().Set("NAME", "pb-fail").Set("TYPE", "DATABLOCK").Set("SIZE", 1), 1);
        await cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout);
        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.attach,nth=1,action=fail-async")]);
        await c.VmAttachAsync(proxy.Id, new OneTemplate().AddVector("DISK", [new("IMAGE_ID", img)]));
        var back = await cloud.Waiter.VmSettledAsync(proxy.Id, SimulatedCloud.Timeout);
        Assert.DoesNotContain(back.Disks, d => d.ImageId == img);
        Assert.Contains("Error attaching", back.LastError, StringComparison.Ordinal);
        Assert.Equal(ImageState.Ready, (await c.ImageInfoAsync(img)).State);
    }

    [Fact]
    public async Task A_saveas_that_fails_leaves_the_image_in_error_and_the_waiter_says_so()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var web = await cloud.VmNamedAsync("web-01");
        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.disksaveas,nth=1,action=fail-async")]);
        var img = await cloud.Client.VmDiskSaveAsAsync(web.Id, 0, "pb-broken", "", -1);
        var e = await Assert.ThrowsAsync<OneOperationFailedException>(() => cloud.Waiter.ImageReadyAsync(img, SimulatedCloud.Timeout));
        Assert.Contains("ERROR", e.Message, StringComparison.Ordinal);
        await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
    }

    [Fact]
    public async Task Latency_and_rate_rules_apply()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        cloud.Server.Faults.Set([FaultRule.Parse("one.system.version,action=delay,latency=300")]);
        var sw = System.Diagnostics.Stopwatch.StartNew();
        await cloud.Client.SystemVersionAsync();
        Assert.True(sw.ElapsedMilliseconds >= 280, $"took {sw.ElapsedMilliseconds} ms");

        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.info,rate=1.0,action=error,code=8192,message=boom")]);
        await Assert.ThrowsAsync<OneInternalException>(() => cloud.Client.VmInfoAsync(0));
        cloud.Server.Faults.Set([]);
        await cloud.Client.VmInfoAsync(0);
    }

    [Fact]
    public async Task A_vm_in_a_failure_state_ends_the_wait_at_once()
    {
        await using var cloud = await SimulatedCloud.StartAsync();
        var web = await cloud.VmNamedAsync("web-01");
        cloud.Server.Faults.Set([FaultRule.Parse("one.vm.action,nth=1,action=fail-async")]);
        await cloud.Client.VmActionAsync("suspend", web.Id);
        var vm = await cloud.Waiter.VmSettledAsync(web.Id, SimulatedCloud.Timeout);
        Assert.Equal(LcmState.Running, vm.LcmState); // a failed suspend returns to RUNNING
    }

    [Fact]
    public void Fault_rules_parse_from_flags_and_json()
    {
        var r = FaultRule.Parse("one.vm.*,rate=0.5,times=3,action=drop-after,latency=20");
        Assert.True(r.Matches("one.vm.attach"));
        Assert.False(r.Matches("one.image.info"));
        Assert.Equal(FaultAction.DropAfter, r.Action);
        Assert.Equal(3, r.Times);
        var plan = FaultPlan.FromJson("{\"rules\":[{\"method\":\"one.vm.detach\",\"nth\":2,\"action\":\"Stuck\"}]}");
        Assert.Equal(FaultAction.Stuck, Assert.Single(plan.Rules).Action);
        Assert.Throws<FormatException>(() => FaultRule.Parse("one.vm.attach,colour=blue"));
    }
}
