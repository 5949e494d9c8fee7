using ProxyBackup.TestSupport;

namespace ProxyBackup.Repository.Tests;

/// <summary>Backup workers write chunks at once; a missing fan-out directory appears on first use.</summary>
public sealed class ConcurrentWriteTests
{
    [Fact]
    public void Workers_writing_the_first_chunks_of_a_repository_without_fan_out_directories_at_once_all_succeed()
    {
        using var dir = new TempDirectory();
        var repo = BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions());
        // As a repository created before the fan-out directories came with it (docs/repository-format.md, "Layout").
        foreach (var fanOut in Directory.GetDirectories(dir.Combine("repo", "chunks"))) Directory.Delete(fanOut);
        const int workers = 8;
        // For each of the 256 fan-out directories, all workers write their first chunk into it at the same moment.
        using var start = new Barrier(workers);
        var written = new System.Collections.Concurrent.ConcurrentBag<ChunkId>();
        var failures = new System.Collections.Concurrent.ConcurrentBag<string>();
        var threads = Enumerable.Range(0, workers).Select(w => new Thread(() =>
        {
            for (var prefix = 0; prefix < 256; prefix++)
            {
                var name = new byte[32];
                (name[0], name[1], name[2]) = ((byte)prefix, (byte)w, 1);
                var id = ChunkId.Read(name);
                start.SignalAndWait();
                try
                {
                    repo.Chunks.Write(id, [0, 1, 2, 3]);
                    written.Add(id);
                }
                catch (IOException e) { failures.Add(e.Message); }
            }
        })).ToList();
        foreach (var t in threads) t.Start();
        foreach (var t in threads) t.Join();
        Assert.Empty(failures);
        Assert.Equal(workers * 256, written.Count);
        Assert.All(written, id => Assert.True(repo.HasChunk(id)));
    }

    [Fact]
    public void A_new_repository_has_all_fan_out_directories_owner_only()
    {
        using var dir = new TempDirectory();
        BackupRepository.Create(dir.Combine("repo"), new RepositoryCreateOptions());
        var fanOuts = Directory.GetDirectories(dir.Combine("repo", "chunks")).Select(Path.GetFileName).Order().ToList();
        Assert.Equal(Enumerable.Range(0, 256).Select(b => b.ToString("x2")), fanOuts);
        Assert.All(fanOuts, d => Assert.Equal(UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute, File.GetUnixFileMode(dir.Combine("repo", "chunks", d!))));
    }
}
