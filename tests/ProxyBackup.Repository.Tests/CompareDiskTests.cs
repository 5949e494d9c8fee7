using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>A disk read back and compared with a restore point chunk by chunk (what a drill does with a restored image).</summary>
public class CompareDiskTests
{
    private const int ChunkSize = 64 << 10;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_disk_compares_equal_to_its_point_and_each_kind_of_difference_is_found_where_it_is(bool encrypted)
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = ChunkSize, Key = encrypted ? RepositoryKey.FromPassphrase("drill passphrase") : null });
        var disk = dir.Combine("disk.img");
        const long Size = (3L << 20) + 512;   // a first third of zeros, a short last chunk
        TestDisks.WriteMixed(disk, Size);
        RestorePoint point;
        using (var w = repo.StartRestorePoint("vm-1"))
        {
            await w.AddDiskAsync("0", disk);
            point = w.Commit();
        }

        var same = await repo.CompareDiskAsync(point, "0", disk);
        Assert.True(same.Same);
        Assert.Equal((Size, (int)((Size + ChunkSize - 1) / ChunkSize)), (same.Bytes, same.Chunks));

        async Task<DiskComparison> AlteredAsync(string name, Action<FileStream> alter)
        {
            var copy = dir.Combine(name);
            File.Copy(disk, copy);
            using (var f = new FileStream(copy, FileMode.Open, FileAccess.ReadWrite)) alter(f);
            return await repo.CompareDiskAsync(point, "0", copy);
        }
        // A byte changed in the random third, a byte written into a chunk of zeros, the end cut off.
        var flipped = await AlteredAsync("flipped.img", f => { f.Position = (2L << 20) + 10; var b = f.ReadByte(); f.Position--; f.WriteByte((byte)(b ^ 0xFF)); });
        Assert.Equal((1, 2L << 20), (flipped.DifferingChunks, flipped.FirstDifferenceOffset));
        var dirtied = await AlteredAsync("dirtied.img", f => { f.Position = 100; f.WriteByte(1); });
        Assert.Equal((1, 0L), (dirtied.DifferingChunks, dirtied.FirstDifferenceOffset));
        var cut = await AlteredAsync("cut.img", f => f.SetLength(Size - 1000));
        Assert.Equal((2, (Size - 1000) / ChunkSize * ChunkSize), (cut.DifferingChunks, cut.FirstDifferenceOffset));   // the chunk cut short and the short last one, gone
    }
}

/// <summary>A restore onto a block device that holds other data: every zero chunk is written as zeros.</summary>
public class RestoreOntoUsedDeviceTests
{
    [RootFact]
    public async Task Zero_chunks_are_written_as_zeros_over_old_data_even_when_the_allocator_hands_back_dirty_memory()
    {
        using var dir = new TempDirectory();
        const int ChunkSize = 64 << 10;
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions { ChunkSize = ChunkSize });
        var disk = dir.Combine("disk.img");
        TestDisks.WriteMixed(disk, 3L << 20);   // its first third is zeros
        RestorePoint point;
        using (var w = repo.StartRestorePoint("vm-1"))
        {
            await w.AddDiskAsync("0", disk);
            point = w.Commit();
        }
        using var device = new LoopDevice(dir.Combine("device.img"), 3L << 20);
        await File.WriteAllBytesAsync(device.Path, Enumerable.Repeat((byte)0x5A, 3 << 20).ToArray());
        // Freed buffers of the chunk size, full of 0xAB, more than the restore takes: the allocator carves its buffers from them.
        var dirty = Enumerable.Range(0, 256).Select(_ => new AlignedBuffer(ChunkSize)).ToList();
        foreach (var b in dirty) b.GetSpan().Fill(0xAB);
        foreach (var b in dirty) ((IDisposable)b).Dispose();

        await repo.RestoreDiskAsync(point, "0", device.Path);

        Assert.True((await repo.CompareDiskAsync(point, "0", device.Path)).Same);
        Assert.Equal(TestDisks.Sha256(disk), TestDisks.Sha256(device.Path));
    }
}
