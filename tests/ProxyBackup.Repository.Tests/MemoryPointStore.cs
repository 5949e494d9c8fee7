using ProxyBackup.Repository;

namespace ProxyBackup.Repository.Tests;

/// <summary>Restore points in memory, to <see cref="IPointStore"/>'s contract: a test sees the repository's pipelines need no points/ directory.</summary>
internal sealed class MemoryPointStore : IPointStore
{
    private readonly object _gate = new();
    private readonly Dictionary<(string Source, string Id), (Dictionary<string, byte[]> Files, DateTimeOffset Begun, string? Writer)> _points = [];

    public IEnumerable<string> Sources()
    {
        lock (_gate) return [.. _points.Keys.Select(k => k.Source).Distinct()];
    }

    public IEnumerable<string> Points(string source)
    {
        lock (_gate) return [.. _points.Where(p => p.Key.Source == source && p.Value.Files.ContainsKey("index")).Select(p => p.Key.Id)];
    }

    public bool Exists(string source, string id)
    {
        lock (_gate) return _points.TryGetValue((source, id), out var p) && p.Files.ContainsKey("index");
    }

    public void Begin(string source, string id)
    {
        lock (_gate) _points.TryAdd((source, id), ([], DateTimeOffset.UtcNow, WriterTag.Current));
    }

    public void Write(string source, string id, string file, ReadOnlySpan<byte> content, Durability durability)
    {
        var copy = content.ToArray();
        lock (_gate)
        {
            if (!_points.TryGetValue((source, id), out var p)) throw new DirectoryNotFoundException($"{source}/{id} was not begun.");
            p.Files[file] = copy;
        }
    }

    public byte[]? Read(string source, string id, string file)
    {
        lock (_gate) return _points.TryGetValue((source, id), out var p) && p.Files.TryGetValue(file, out var f) ? f : null;
    }

    public IEnumerable<string> Files(string source, string id)
    {
        lock (_gate)
            return _points.TryGetValue((source, id), out var p) ? [.. p.Files.Keys] : throw new DirectoryNotFoundException($"{source}/{id}");
    }

    public void SyncBeforeIndex() { }

    public void Remove(string source, string id)
    {
        lock (_gate) _points.Remove((source, id));
    }

    public void Discard(string source, string id) => Remove(source, id);

    public IReadOnlyList<IncompletePoint> Incomplete()
    {
        lock (_gate)
            return [.. _points.Where(p => !p.Value.Files.ContainsKey("index")).Select(p => new IncompletePoint(p.Key.Source, p.Key.Id, p.Value.Writer, p.Value.Begun))];
    }

    public bool RemoveIncomplete(string source, string id)
    {
        lock (_gate)
            return _points.TryGetValue((source, id), out var p) && !p.Files.ContainsKey("index") && _points.Remove((source, id));
    }
}
