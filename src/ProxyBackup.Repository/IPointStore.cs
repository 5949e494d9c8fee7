namespace ProxyBackup.Repository;

/// <summary>
/// Where a repository's restore points live (docs/repository-format.md, "Restore point stores"):
/// per source and point, named files (index, manifests, metadata, verify state), sealed by the
/// repository before they get here. A point exists once its index does. Format 1 keeps them in
/// the repository directory (<see cref="LocalPointStore"/>).
/// </summary>
public interface IPointStore
{
    /// <summary>The sources that have points, complete or not.</summary>
    IEnumerable<string> Sources();

    /// <summary>The points of a source that have an index.</summary>
    IEnumerable<string> Points(string source);

    bool Exists(string source, string id);

    /// <summary>Makes room for a point's files, recording this process's writer tag (<see cref="WriterTag.Current"/>) when it has one; it does not exist until its index is written.</summary>
    void Begin(string source, string id);

    /// <summary>Writes one file of a point, with the durability its kind needs; <see cref="RepositoryFullException"/> when the storage is full.</summary>
    void Write(string source, string id, string file, ReadOnlySpan<byte> content, Durability durability);

    /// <summary>One file of a point, or null when it is not there.</summary>
    byte[]? Read(string source, string id, string file);

    /// <summary>The names of a point's files.</summary>
    IEnumerable<string> Files(string source, string id);

    /// <summary>Before a new index: what the point references (its files, and chunk files in the same file system) is durable.</summary>
    void SyncBeforeIndex();

    /// <summary>Removes a point: its index first, so that it is gone at once, then the rest.</summary>
    void Remove(string source, string id);

    /// <summary>Removes what a writer that gave up wrote of a point that never had an index.</summary>
    void Discard(string source, string id);

    /// <summary>GC: the points without an index (being written, or left by writers that died), with their writer's tag and when they were last written.</summary>
    IReadOnlyList<IncompletePoint> Incomplete();

    /// <summary>GC: removes a point that still has no index; false when it has one now (its writer committed meanwhile) or is gone.</summary>
    bool RemoveIncomplete(string source, string id);
}

/// <param name="Writer">The tag its writer recorded, or null (written before tags, or the record was lost).</param>
public sealed record IncompletePoint(string Source, string Id, string? Writer, DateTimeOffset LastWritten);
