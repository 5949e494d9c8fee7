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
