using ProxyBackup.OpenNebula;
using ProxyBackup.Simulator;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// The snapshot set's consistency modes and commands (docs/operations.md, "Consistency of the snapshot
/// set"), against the simulator, which records the moment each snapshot's data is from: a running
/// guest's is the instant of its snapshot, a suspended guest's the instant it stopped writing.
/// </summary>
public class ConsistencyTests
{
    private static SnapshotConsistency Suspend(string? pre = null, string? post = null) => new() { Mode = ConsistencyMode.Suspend, PreCommand = pre, PostCommand = post };

    [Fact]
    public async Task A_suspend_backup_takes_every_disk_at_one_moment_and_reports_the_pause_a_sequential_one_does_not()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");

        var sequential = await w.Backup.RunAsync(web.Id, new BackupOptions());
        var seqMoments = w.Sim.Cloud.SnapshotMoments(web.Id);
        Assert.True(seqMoments.Count >= 2, "web-01 has two disks to snapshot");
        Assert.True(seqMoments[1].DataAt > seqMoments[0].DataAt, "sequential: the second disk's data is of a later moment than the first's");
        Assert.Null(sequential.Paused);
        Assert.Equal("sequential", sequential.RestorePoint.Tags["consistency"]);

        var suspended = await w.Backup.RunAsync(web.Id, new BackupOptions { Consistency = Suspend() });
        var moments = w.Sim.Cloud.SnapshotMoments(web.Id).Skip(seqMoments.Count).ToList();
        Assert.Equal(2, moments.Count);
        Assert.Single(moments.Select(m => m.DataAt).Distinct());
        Assert.True(suspended.Paused > TimeSpan.Zero);
        Assert.Equal("suspend", suspended.RestorePoint.Tags["consistency"]);
        Assert.Contains(w.Catalog.LogOf(suspended.JobId), l => l.Message.StartsWith($"VM {web.Id} paused ", StringComparison.Ordinal) && l.Message.EndsWith("(suspend)", StringComparison.Ordinal));

        Assert.Equal("RUNNING", (await w.Client.VmInfoAsync(web.Id)).StateName);
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);
        Assert.Empty(w.Catalog.Pending());
    }

    [Fact]
    public async Task A_failing_pre_command_fails_the_backup_before_any_snapshot()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(web.Id, new BackupOptions { Consistency = Suspend(pre: "echo starting; echo cannot flush the database >&2; exit 3") }));
        Assert.Equal("The pre-snapshot command exited 3: cannot flush the database; no snapshot was taken.", e.Message);
        Assert.Empty(w.Sim.Cloud.SnapshotMoments(web.Id));
        Assert.Equal("RUNNING", (await w.Client.VmInfoAsync(web.Id)).StateName);
        Assert.Empty(w.Repository.ListRestorePoints(w.Backup.Sources.Of(web.Id)));
    }

    [Fact]
    public async Task The_commands_see_the_vm_and_when_a_snapshot_fails_the_vm_is_resumed_and_the_post_command_still_runs()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var trace = Path.Combine(w.Root, "commands.txt");
        var record = $"echo \"$PROXYBACKUP_PHASE $PROXYBACKUP_VM_ID $PROXYBACKUP_VM_NAME [$PROXYBACKUP_VM_IP]\" >> {trace}";
        w.Sim.Faults.Set([FaultRule.Parse("one.vm.disksnapshotcreate,nth=2,action=error,code=2048,message=injected snapshot refusal")]);
        await Assert.ThrowsAnyAsync<Exception>(() => w.Backup.RunAsync(web.Id, new BackupOptions { Consistency = Suspend(record, record) }));
        w.Sim.Faults.Set([]);

        var ip = web.Nics.Select(n => n.Ip).OfType<string>().FirstOrDefault() ?? "";
        Assert.Equal([$"pre {web.Id} web-01 [{ip}]", $"post {web.Id} web-01 [{ip}]"], await File.ReadAllLinesAsync(trace));
        Assert.Equal("RUNNING", (await w.Client.VmInfoAsync(web.Id)).StateName);
        Assert.Equal(0, w.Inventory()["disk_snapshots"]);   // the first disk's snapshot removed by the job's compensation
        Assert.Empty(w.Catalog.Pending());
    }

    [Fact]
    public async Task A_pre_command_that_hangs_is_stopped_at_its_timeout_and_fails_the_backup()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var consistency = new SnapshotConsistency { PreCommand = "echo waiting for the database; sleep 600", CommandTimeoutSeconds = 1 };
        var e = await Assert.ThrowsAsync<JobFailedException>(() => w.Backup.RunAsync(web.Id, new BackupOptions { Consistency = consistency }));
        Assert.Equal("The pre-snapshot command did not end within 1 s and was stopped: waiting for the database; no snapshot was taken.", e.Message);
        Assert.Empty(w.Sim.Cloud.SnapshotMoments(web.Id));
    }

    /// <summary>A job that died with the VM suspended (its journal entry left): the cleanup pass resumes the VM.</summary>
    [Fact]
    public async Task A_vm_left_suspended_by_a_dead_job_is_resumed_by_the_cleanup()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        w.Catalog.Record("b-dead", CloudObjectKind.SuspendedVm, web.Id, -1, "pb-b-dead-suspend");
        await w.Client.VmActionAsync("suspend", web.Id);
        await w.Steps.Waiter.VmUntilAsync(web.Id, "SUSPENDED", v => v.State == VmState.Suspended, TimeSpan.FromMinutes(1));

        var report = await w.Cleaner.CleanAsync();
        Assert.Equal(1, report.Removed);
        Assert.Equal("RUNNING", (await w.Client.VmInfoAsync(web.Id)).StateName);
        Assert.Empty(w.Catalog.Pending());
    }
}
