using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>Concurrent operations on one repository object share one memory budget for their chunk buffers.</summary>
public sealed class ChunkMemoryTests
{
    private const long MiB = 1 << 20;

    [Fact]
    public async Task Preferred_workers_while_they_fit_in_half_the_budget_then_the_fewest_then_a_wait()
    {
        var memory = new ChunkMemory { Budget = 100 * MiB };
        var waits = 0;
        // 8 MiB + 10 × 4 MiB = 48 MiB: preferred twice, then the fewest (3 workers, 20 MiB) no longer fit.
        using var first = await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, () => waits++, CancellationToken.None);
        var second = await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, () => waits++, CancellationToken.None);
        Assert.Equal((10, 10), (first.Workers, second.Workers));
        Assert.Equal(96 * MiB, memory.Reserved);

        var third = memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, () => waits++, CancellationToken.None);
        await Task.Delay(100);
        Assert.False(third.IsCompleted);
        Assert.Equal(1, waits);

        second.Dispose();
        second.Dispose(); // twice gives back once
        using var granted = await third.WaitAsync(TimeSpan.FromSeconds(10));
        Assert.Equal(10, granted.Workers);
        Assert.Equal(96 * MiB, memory.Reserved);
    }

    [Fact]
    public async Task Preferred_workers_beyond_half_the_budget_are_never_granted_but_an_operation_alone_always_runs()
    {
        var memory = new ChunkMemory { Budget = 100 * MiB };
        using (var big = await memory.ReserveAsync(8 * MiB, 0, preferred: 8, fewest: 4, null, CancellationToken.None))
            Assert.Equal(4, big.Workers); // 64 MiB is more than half; 32 MiB fits
        using (var encrypting = await memory.ReserveAsync(4 * MiB, 20 * MiB, preferred: 10, fewest: 3, null, CancellationToken.None))
            Assert.Equal(10, encrypting.Workers); // the workers' 40 MiB count against the half, not the encoders' buffers beside them

        using var alone = await memory.ReserveAsync(64 * MiB, 0, preferred: 8, fewest: 2, null, CancellationToken.None);
        Assert.Equal(2, alone.Workers);
        Assert.Equal(128 * MiB, memory.Reserved);
        var next = memory.ReserveAsync(1 * MiB, 0, preferred: 1, fewest: 1, null, CancellationToken.None);
        await Task.Delay(100);
        Assert.False(next.IsCompleted); // over budget: nothing else until it ends
    }

    [Fact]
    public async Task With_several_operations_expected_the_first_ones_leave_room_for_the_others()
    {
        // The grants of the first test (preferred 48 MiB, fewest 20 MiB of 100), now with 4 jobs expected:
        // had the first two taken 48 MiB each, the third and fourth would wait.
        var memory = new ChunkMemory { Budget = 100 * MiB, ExpectedOperations = 4 };
        var waits = 0;
        var leases = new List<ChunkMemory.Lease>();
        for (var i = 0; i < 4; i++)
            leases.Add(await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, () => waits++, CancellationToken.None).WaitAsync(TimeSpan.FromSeconds(10)));
        Assert.Equal(new[] { 3, 3, 3, 3 }, leases.Select(l => l.Workers));
        Assert.Equal(0, waits);
        Assert.Equal(80 * MiB, memory.Reserved);
        foreach (var lease in leases) lease.Dispose();

        // Two expected, as the daemon's default: both still get their preferred workers.
        memory.ExpectedOperations = 2;
        using var first = await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, null, CancellationToken.None);
        using var second = await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, null, CancellationToken.None);
        Assert.Equal((10, 10), (first.Workers, second.Workers));
    }

    [Fact]
    public async Task An_admitted_job_holds_its_memory_from_the_start_and_its_operation_draws_on_it()
    {
        var memory = new ChunkMemory { Budget = 100 * MiB, ExpectedOperations = 2 };
        var admission = await memory.AdmitAsync(20 * MiB, null, CancellationToken.None);
        // Someone else takes most of the rest meanwhile (74 MiB): 6 MiB are free, the job's own 20 MiB still are its own.
        var other = await memory.ReserveAsync(4 * MiB, 62 * MiB, preferred: 3, fewest: 3, null, CancellationToken.None);
        using (var lease = await memory.ReserveAsync(4 * MiB, 8 * MiB, preferred: 10, fewest: 3, null, CancellationToken.None, admission).WaitAsync(TimeSpan.FromSeconds(10)))
            Assert.Equal((3, 94 * MiB), (lease.Workers, memory.Reserved));
        admission.Dispose();
        Assert.Equal(74 * MiB, memory.Reserved);

        // A job that does not fit waits before it may start, and says so (at once, before any await).
        var waits = 0;
        var admitting = memory.AdmitAsync(30 * MiB, () => waits++, CancellationToken.None);
        Assert.False(admitting.IsCompleted);
        Assert.Equal(1, waits);
        other.Dispose();
        using (await admitting.WaitAsync(TimeSpan.FromSeconds(10)))
            Assert.Equal(30 * MiB, memory.Reserved);
        Assert.Equal(0, memory.Reserved);
        Assert.Equal(1, waits);
    }

    [Fact]
    public async Task A_backup_at_its_fewest_workers_takes_what_the_daemon_counts_per_job()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        repo.Memory.Budget = 1; // alone, an operation runs at its fewest workers
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3_000_000, seed: 7);
        long held = 0;
        using (var w = repo.StartRestorePoint("vm-1"))
        {
            await w.AddDiskAsync("0", disk, new SynchronousProgress<TransferProgress>(_ => held = Math.Max(held, repo.Memory.Reserved)));
            w.Commit();
        }
        Assert.Equal(repo.BackupMemoryAtFewest, held);
        Assert.Equal(0, repo.Memory.Reserved);
    }

    [Fact]
    public async Task A_cancelled_wait_takes_nothing()
    {
        var memory = new ChunkMemory { Budget = 10 * MiB };
        using var held = await memory.ReserveAsync(MiB, 0, preferred: 8, fewest: 8, null, CancellationToken.None);
        using var cancel = new CancellationTokenSource(TimeSpan.FromMilliseconds(100));
        await Assert.ThrowsAnyAsync<OperationCanceledException>(() => memory.ReserveAsync(MiB, 0, preferred: 4, fewest: 4, null, cancel.Token));
        Assert.Equal(8 * MiB, memory.Reserved);
    }

    [Fact]
    public async Task Concurrent_backups_restores_and_verifies_stay_within_the_budget_and_all_succeed()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = 64 << 10 });
        repo.Memory.Budget = 1; // every operation runs alone, the others wait
        var disks = Enumerable.Range(0, 3).Select(i =>
        {
            var path = dir.Combine($"disk{i}.img");
            TestDisks.WriteMixed(path, 3_000_000 + i * 100_000, seed: i + 1);
            return path;
        }).ToList();
        var waited = new System.Collections.Concurrent.ConcurrentBag<string>();
        var progress = new SynchronousProgress<TransferProgress>(p => { if (p.What.Contains("waiting for memory", StringComparison.Ordinal)) waited.Add(p.What); });

        var points = await Task.WhenAll(disks.Select((disk, i) => Task.Run(async () =>
        {
            using var w = repo.StartRestorePoint($"vm-{i}");
            await w.AddDiskAsync("0", disk, progress);
            return w.Commit();
        })));
        var restores = points.Select((p, i) => Task.Run(() => repo.RestoreDiskAsync(p, "0", dir.Combine($"restored{i}.img"), progress: progress)));
        var verify = Task.Run(() => repo.VerifyAsync(readData: true, progress));
        await Task.WhenAll(restores);

        Assert.True((await verify).Ok);
        for (var i = 0; i < disks.Count; i++) Assert.Equal(TestDisks.Sha256(disks[i]), TestDisks.Sha256(dir.Combine($"restored{i}.img")));
        Assert.NotEmpty(waited);
        Assert.Equal(0, repo.Memory.Reserved);
    }

}
