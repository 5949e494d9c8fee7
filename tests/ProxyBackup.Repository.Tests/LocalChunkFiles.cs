using ProxyBackup.Repository;

namespace ProxyBackup.Repository.Tests;

/// <summary>The files of a repository's local chunk store, for tests that damage or count them.</summary>
internal static class LocalChunkFiles
{
    public static string ChunkPath(this BackupRepository repository, ChunkId id) => ((LocalChunkStore)repository.Chunks).PathOf(id);

    public static string ChunksDirectory(this BackupRepository repository) => ((LocalChunkStore)repository.Chunks).Directory;

    public static bool HasChunk(this BackupRepository repository, ChunkId id) => repository.Chunks.Length(id) is not null;
}
