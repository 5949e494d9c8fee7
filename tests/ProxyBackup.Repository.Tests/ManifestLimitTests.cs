using ProxyBackup.Contracts;

namespace ProxyBackup.Repository.Tests;

/// <summary>A manifest is one array: a disk with more chunks than it holds is refused up front with the chunk size that fits, not an overflow half-way.</summary>
public class ManifestLimitTests
{
    [Fact]
    public void Just_under_4_TiB_in_64_KiB_chunks_fits_and_more_is_refused_with_the_chunk_size_that_fits()
    {
        const int small = 64 << 10;
        Assert.Equal((1 << 26) - 16, Manifest.ChunkCount((4L << 40) - (1 << 20), small));
        var e = Assert.Throws<RepositoryException>(() => Manifest.ChunkCount(5L << 40, small));
        Assert.Contains("chunks of at least 131072 bytes", e.Message, StringComparison.Ordinal);
        Assert.Equal(5 << 18, Manifest.ChunkCount(5L << 40, 4 << 20));
    }
}
