using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>Chunk files written with O_DIRECT for their whole blocks and through the page cache for the rest.</summary>
public class ChunkFileWriteTests
{
    [Theory]
    [InlineData(1)]
    [InlineData(4095)]
    [InlineData(4096)]
    [InlineData(4097)]
    [InlineData(3 * 4096 + 5)]
    public void A_direct_write_leaves_exactly_the_content_under_its_name_and_nothing_in_tmp(int length)
    {
        using var dir = new TempDirectory();
        var tmp = Directory.CreateDirectory(dir.Combine("tmp")).FullName;
        var target = dir.Combine("chunk");
        using var buffer = new AlignedBuffer(length + 4096);
        var content = buffer.GetSpan()[..length];
        new Random(length).NextBytes(content);

        Assert.True(AtomicFile.TryWriteDirect(tmp, target, content));

        Assert.Equal(content.ToArray(), File.ReadAllBytes(target));
        Assert.Empty(Directory.EnumerateFileSystemEntries(tmp));
    }

    [Fact]
    public void A_direct_write_the_device_refuses_is_recognised_so_the_buffered_write_can_take_over()
    {
        // What TryWriteDirect relies on when a device's blocks are larger than its 4 KiB pieces:
        // the kernel's EINVAL arrives as the IOException's HResult (shown with a misaligned buffer).
        using var dir = new TempDirectory();
        using var handle = Native.CreateDirect(dir.Combine("f"));
        Assert.NotNull(handle);
        using var buffer = new AlignedBuffer(8192);

        var e = Assert.ThrowsAny<IOException>(() => RandomAccess.Write(handle, buffer.GetSpan()[1..4097], 0));

        Assert.Equal(Native.Einval, e.HResult);
    }

    [Fact]
    public void Content_outside_an_aligned_buffer_is_left_to_the_buffered_write()
    {
        using var dir = new TempDirectory();
        var tmp = Directory.CreateDirectory(dir.Combine("tmp")).FullName;
        using var buffer = new AlignedBuffer(8192);

        Assert.False(AtomicFile.TryWriteDirect(tmp, dir.Combine("chunk"), buffer.GetSpan()[1..5000]));

        Assert.False(File.Exists(dir.Combine("chunk")));
        Assert.Empty(Directory.EnumerateFileSystemEntries(tmp));
    }
}
