using Microsoft.Data.Sqlite;
using ProxyBackup.Catalog;
using ProxyBackup.Contracts;
using ProxyBackup.TestSupport;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// Another proxy sharing the catalog: its pid cannot be looked up from here, so its lease decides.
/// While it renews, its snapshots and jobs are its own; once the lease has run out, they are
/// leftovers and interrupted jobs (docs/architecture.md, "Every cloud object has an owner").
/// </summary>
public class OwnerLeaseTests
{
    private const string OtherHost = "proxy-2.example";

    /// <summary>Writes what the other proxy's process writes: its journal entries and jobs are owned by it, its lease renewed at <paramref name="renewed"/>.</summary>
    private static void OwnAsOtherProxy(SqlCatalog catalog, string jobId, DateTimeOffset renewed)
    {
        using var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = catalog.Path }.ToString());
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = """
            UPDATE journal SET owner_host = $h, owner_pid = 4242, owner_start = 77 WHERE job_id = $job;
            UPDATE jobs SET owner_host = $h, owner_pid = 4242, owner_start = 77 WHERE id = $job;
            INSERT OR REPLACE INTO owner_leases (host, pid, start, renewed) VALUES ($h, 4242, 77, $t);
            """;
        cmd.Parameters.AddWithValue("$h", OtherHost);
        cmd.Parameters.AddWithValue("$job", jobId);
        cmd.Parameters.AddWithValue("$t", renewed.ToString("o"));
        cmd.ExecuteNonQuery();
    }

    [Fact]
    public async Task Another_proxys_snapshot_is_left_alone_while_its_lease_is_renewed_and_removed_once_it_ran_out()
    {
        var clock = new ShiftedClock();
        await using var w = await EngineWorld.StartAsync(configure: o => o with { Time = clock });
        var web = await w.VmAsync("web-01");
        const string job = "b20261204120000beef";
        var entry = w.Catalog.Record(job, CloudObjectKind.DiskSnapshot, web.Id, 0, $"pb-{job}-d0");
        var snapId = await w.Client.VmDiskSnapshotCreateAsync(web.Id, 0, $"pb-{job}-d0");
        w.Catalog.SetObjectId(entry, snapId);
        w.Catalog.Started(job, "backup", web.Id);
        await w.Steps.Waiter.VmSettledAsync(web.Id, TimeSpan.FromSeconds(20));
        OwnAsOtherProxy(w.Catalog, job, DateTimeOffset.UtcNow);

        var report = await w.Cleaner.CleanAsync();
        Assert.Equal(0, report.Removed);
        Assert.Contains(report.Pending, p => p.Contains($"owned by job {job}, still running (pid 4242 on {OtherHost})", StringComparison.Ordinal));
        Assert.Equal(0, w.Catalog.MarkInterrupted());
        Assert.Single((await w.VmAsync("web-01")).SnapshotsOf(0));

        // The other proxy stopped renewing: after the lease its objects are leftovers.
        clock.Offset = ProcessOwner.Lease + TimeSpan.FromSeconds(5);
        report = await w.Cleaner.CleanAsync();
        Assert.Equal(1, report.Removed);
        Assert.Empty(w.Catalog.Pending());
        Assert.Empty((await w.VmAsync("web-01")).SnapshotsOf(0));

        var later = new SqlCatalog(w.Catalog.Path, clock);
        Assert.Equal(1, later.MarkInterrupted());
        var record = later.Recent(5).Single(j => j.Id == job);
        Assert.Equal("interrupted", record.State);
        Assert.Contains($"pid 4242 on {OtherHost}", record.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void A_process_keeps_its_lease_while_it_runs()
    {
        using var dir = new TempDirectory("pb-lease");
        var catalog = new SqlCatalog(dir.Combine("catalog.db"));
        using (catalog.KeepLease())
        {
            // The first renewal is immediate; wait for it rather than race it.
            var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
            while (LeaseOf(catalog) is null && DateTime.UtcNow < deadline) Thread.Sleep(20);
        }
        var renewed = LeaseOf(catalog);
        Assert.NotNull(renewed);
        Assert.True(ProcessOwner.Current.MayBeAlive(renewed, DateTimeOffset.UtcNow));
        // What another host decides from the lease alone.
        var elsewhere = ProcessOwner.Current with { Host = OtherHost, Boot = "boot-of-proxy-b" };
        Assert.True(elsewhere.MayBeAlive(renewed, renewed!.Value + TimeSpan.FromSeconds(90)));
        Assert.False(elsewhere.MayBeAlive(renewed, renewed.Value + ProcessOwner.Lease));
        Assert.False(elsewhere.MayBeAlive(null, DateTimeOffset.UtcNow));
        SqliteConnection.ClearAllPools();
    }

    private static DateTimeOffset? LeaseOf(SqlCatalog catalog)
    {
        using var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = catalog.Path }.ToString());
        c.Open();
        using var cmd = c.CreateCommand();
        cmd.CommandText = "SELECT renewed FROM owner_leases WHERE host = $h AND pid = $p;";
        cmd.Parameters.AddWithValue("$h", ProcessOwner.Current.Host);
        cmd.Parameters.AddWithValue("$p", ProcessOwner.Current.Pid);
        return cmd.ExecuteScalar() is string s ? DateTimeOffset.Parse(s, System.Globalization.CultureInfo.InvariantCulture) : null;
    }

    [Fact]
    public void A_vm_guard_left_before_a_reboot_or_by_a_reused_pid_does_not_keep_the_vm_busy()
    {
        using var dir = new TempDirectory();
        var catalog = new SqlCatalog(dir.Combine("catalog.db"));
        void Guard(string host, long start, string? boot)
        {
            using var c = new SqliteConnection(new SqliteConnectionStringBuilder { DataSource = catalog.Path }.ToString());
            c.Open();
            using var cmd = c.CreateCommand();
            // This very process's pid: alive, but only the guard's job if its start time and boot match.
            cmd.CommandText = "INSERT OR REPLACE INTO vm_guards (vm_id, job_id, what, host, pid, since, start, boot) VALUES (7, 'old-job', 'backup', $h, $p, '2026-12-01 02:00:00Z', $s, $b);";
            cmd.Parameters.AddWithValue("$h", host);
            cmd.Parameters.AddWithValue("$p", Environment.ProcessId);
            cmd.Parameters.AddWithValue("$s", start);
            cmd.Parameters.AddWithValue("$b", (object?)boot ?? DBNull.Value);
            cmd.ExecuteNonQuery();
        }

        Guard(Environment.MachineName, ProcessOwner.Current.StartTicks + 1, ProcessOwner.BootId);   // the pid was reused
        using (catalog.Acquire(7, "new-job", "backup")) { }
        Guard(Environment.MachineName, ProcessOwner.Current.StartTicks, "a-boot-before-the-reboot"); // this host before a reboot
        using (catalog.Acquire(7, "new-job", "backup")) { }
        Guard(Environment.MachineName, ProcessOwner.Current.StartTicks, ProcessOwner.BootId);        // really held
        Assert.Throws<VmBusyException>(() => catalog.Acquire(7, "new-job", "backup"));
        Guard(OtherHost, 1, "another-proxy-boot");                                                    // another proxy sharing the catalog
        Assert.Throws<VmBusyException>(() => catalog.Acquire(7, "new-job", "backup"));
        SqliteConnection.ClearAllPools();
    }
}
