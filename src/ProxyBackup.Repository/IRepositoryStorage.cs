namespace ProxyBackup.Repository;

/// <summary>
/// Where a repository lives (docs/repository-format.md, "Storages"): its own small files (<c>config</c>,
/// <c>keys/</c>, <c>locks/</c>), named by their path in the layout, and the two stores of chunks and
/// restore points. Format 1 is the same on each: a local directory (<see cref="LocalRepositoryStorage"/>)
/// or an S3 bucket (ProxyBackup.ObjectStorage).
/// </summary>
public interface IRepositoryStorage
{
    /// <summary>What the operator calls it: a path, or <c>s3:ENDPOINT/BUCKET/PREFIX</c>. Never holds a secret.</summary>
    string Location { get; }

    /// <summary>Why there is no repository here, and what to do (said when <c>config</c> is absent).</summary>
    string NoRepositoryHere();

    /// <summary>A small file (<c>config</c>, <c>keys/ID</c>, <c>locks/NAME</c>), or null when it is not there.</summary>
    byte[]? Read(string name);

    /// <summary>Writes a small file whole and durably: a reader sees the old content, the new, or none, never a part.</summary>
    void Write(string name, ReadOnlySpan<byte> content);

    /// <summary>The names of the files in a folder (<c>keys</c>, <c>locks</c>), without the folder.</summary>
    IReadOnlyList<string> List(string folder);

    /// <summary>Removes a small file; nothing happens when it is already gone.</summary>
    void Delete(string name);

    /// <summary>When a small file was last written, or null when it is not there.</summary>
    DateTimeOffset? LastWritten(string name);

    /// <summary>True when nothing is stored here yet (a new repository goes only into an empty place).</summary>
    bool IsEmpty();

    /// <summary>Makes what a new repository needs besides its files (the local directories).</summary>
    void CreateLayout();

    /// <summary>Makes the working folders and checks that something can be written: false on a read-only copy.</summary>
    bool PrepareForWriting();

    /// <summary>The chunk store; <paramref name="maxFileLength"/> is the largest a chunk file can be in this repository.</summary>
    IChunkStore Chunks(int maxFileLength);

    /// <summary>The restore point store.</summary>
    IPointStore Points();

    /// <summary>GC: the temporary files writers left or are writing (local: <c>tmp/</c>), with their writer's tag and last write.</summary>
    IReadOnlyList<TemporaryFile> Temporaries();

    /// <summary>GC: removes one; false when it is gone (renamed into place meanwhile).</summary>
    bool RemoveTemporary(string name);
}

/// <param name="Writer">The tag of the writer that made it, or null.</param>
public sealed record TemporaryFile(string Name, string? Writer, DateTimeOffset Written);
