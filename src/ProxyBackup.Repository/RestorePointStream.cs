namespace ProxyBackup.Repository;

/// <summary>
/// Random-access, read-only view of one disk of a restore point, chunk by chunk, each verified.
/// For file-level restore: a file system reader can work on it without restoring the whole disk.
/// </summary>
public sealed class RestorePointStream : Stream
{
    private readonly StoredChunks _chunks;
    private readonly Manifest _manifest;
    private readonly ChunkCodec _codec;
    private readonly byte[] _file;
    private readonly byte[] _chunk;
    private int _cachedIndex = -1;
    private long _position;

    internal RestorePointStream(StoredChunks chunks, Manifest manifest)
    {
        _chunks = chunks;
        _manifest = manifest;
        _codec = chunks.NewCodec();
        _file = new byte[StoredChunks.FileCapacity(manifest.ChunkSize)];
        _chunk = new byte[manifest.ChunkSize];
    }

    public override bool CanRead => true;
    public override bool CanSeek => true;
    public override bool CanWrite => false;
    public override long Length => _manifest.DiskSize;

    public override long Position
    {
        get => _position;
        set => _position = value >= 0 ? value : throw new ArgumentOutOfRangeException(nameof(value));
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var total = 0;
        while (buffer.Length > 0 && _position < _manifest.DiskSize)
        {
            var index = (int)(_position / _manifest.ChunkSize);
            var within = (int)(_position % _manifest.ChunkSize);
            var available = _manifest.ChunkLength(index) - within;
            var n = Math.Min(available, buffer.Length);
            var id = _manifest.Chunks[index];
            if (id.IsZero) buffer[..n].Clear();
            else
            {
                if (_cachedIndex != index)
                {
                    _cachedIndex = -1;
                    _manifest.CheckChunkLength(index, id, _codec.Decode(id, _file.AsSpan(0, _chunks.Store.Read(id, _file)), _chunk));
                    _cachedIndex = index;
                }
                _chunk.AsSpan(within, n).CopyTo(buffer);
            }
            buffer = buffer[n..];
            _position += n;
            total += n;
        }
        return total;
    }

    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        _ => _manifest.DiskSize + offset,
    };

    public override void Flush() { }
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (disposing) _codec.Dispose();
        base.Dispose(disposing);
    }
}

