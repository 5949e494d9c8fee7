using System.Buffers.Binary;

namespace ProxyBackup.Repository;

/// <summary>A chunk's 32-byte name. All zeros is reserved: it marks an all-zero chunk in a manifest.</summary>
public readonly record struct ChunkId(ulong A, ulong B, ulong C, ulong D)
{
    public const int Size = 32;
    public static readonly ChunkId Zero = default;

    public bool IsZero => (A | B | C | D) == 0;

    public static ChunkId Read(ReadOnlySpan<byte> bytes) => new(
        BinaryPrimitives.ReadUInt64BigEndian(bytes),
        BinaryPrimitives.ReadUInt64BigEndian(bytes[8..]),
        BinaryPrimitives.ReadUInt64BigEndian(bytes[16..]),
        BinaryPrimitives.ReadUInt64BigEndian(bytes[24..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64BigEndian(destination, A);
        BinaryPrimitives.WriteUInt64BigEndian(destination[8..], B);
        BinaryPrimitives.WriteUInt64BigEndian(destination[16..], C);
        BinaryPrimitives.WriteUInt64BigEndian(destination[24..], D);
    }

    public static ChunkId Parse(string hex)
    {
        if (hex.Length != 64) throw new FormatException($"'{hex}' is not a chunk name (64 hex digits).");
        return Read(Convert.FromHexString(hex));
    }

    public override string ToString()
    {
        Span<byte> b = stackalloc byte[Size];
        Write(b);
        return Convert.ToHexStringLower(b);
    }
}
