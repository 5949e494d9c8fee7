using ProxyBackup.TestSupport;

namespace ProxyBackup.FileRestore.Tests;

/// <summary>Partition tables read without the kernel, against what sfdisk wrote.</summary>
public class PartitionTableTests
{
    private static IReadOnlyList<DiskPartition> Written(TempDirectory dir, string script)
    {
        var image = dir.Combine("disk.img");
        using (var f = File.Create(image)) f.SetLength(64L << 20);
        var (code, _, error) = ChildProcess.Run("bash", "-c", $"printf '{script}' | sfdisk -q {image}");
        Assert.True(code == 0, error);
        var bytes = File.ReadAllBytes(image);
        return PartitionTable.Read((offset, count) => bytes.AsSpan((int)offset, (int)Math.Min(count, bytes.Length - offset)).ToArray(), bytes.Length);
    }

    [Fact]
    public void An_mbr_with_logical_partitions_in_an_extended_one_is_read_with_the_kernels_numbers()
    {
        using var dir = new TempDirectory();
        var parts = Written(dir, @"label: dos\nsize=8MiB, type=83\ntype=5\nsize=10MiB, type=83\nsize=12MiB, type=8e\n");
        Assert.Equal([1, 5, 6], parts.Select(p => p.Number));
        Assert.Equal((1L << 20, 8L << 20), (parts[0].Start, parts[0].Length));
        Assert.Equal(10L << 20, parts[1].Length);
        Assert.Equal(12L << 20, parts[2].Length);
        Assert.True(parts[2].Start > parts[1].Start + parts[1].Length - 1);
    }

    [Fact]
    public void A_gpt_is_read_and_a_disk_without_a_table_has_no_partitions()
    {
        using var dir = new TempDirectory();
        var parts = Written(dir, @"label: gpt\nsize=8MiB\nsize=16MiB\n");
        Assert.Equal([(1, 1L << 20, 8L << 20), (2, 9L << 20, 16L << 20)], parts.Select(p => (p.Number, p.Start, p.Length)));
        var blank = new byte[1 << 20];
        Assert.Empty(PartitionTable.Read((offset, count) => blank.AsSpan((int)offset, count).ToArray(), blank.Length));
    }
}
