using System.Buffers.Binary;

namespace ProxyBackup.FileRestore;

/// <summary>A partition of a disk: its number as the guest's kernel counts it, where it starts and how long it is, in bytes.</summary>
internal sealed record DiskPartition(int Number, long Start, long Length);

/// <summary>
/// Reads a disk's partition table, GPT or MBR (with logical partitions in an extended one), without
/// the kernel (docs/operations.md, "File-level restore"): the appliance's kernel never scans a
/// restore point's disk, and one built without partition support reads them all the same.
/// </summary>
internal static class PartitionTable
{
    private const int Sector = 512;

    /// <summary>The partitions, in number order; empty when the disk has no table (a file system on the whole disk).</summary>
    public static IReadOnlyList<DiskPartition> Read(Func<long, int, byte[]> read, long diskSize)
    {
        var mbr = read(0, Sector);
        if (mbr.Length < Sector || mbr[510] != 0x55 || mbr[511] != 0xAA) return [];
        var entries = Enumerable.Range(0, 4).Select(i => mbr.AsSpan(446 + 16 * i, 16).ToArray()).ToList();
        if (entries.Any(e => e[4] == 0xEE)) return Gpt(read, diskSize);
        // A boot sector of a file system also ends in 55 AA: only a table whose entries fit the disk is one.
        var primaries = entries.Select((e, i) => (Number: i + 1, Type: e[4], Start: (long)BinaryPrimitives.ReadUInt32LittleEndian(e.AsSpan(8)) * Sector,
            Length: (long)BinaryPrimitives.ReadUInt32LittleEndian(e.AsSpan(12)) * Sector)).Where(e => e.Type != 0 && e.Length > 0).ToList();
        if (primaries.Any(p => p.Start <= 0 || p.Start + p.Length > diskSize || (entries[p.Number - 1][0] & 0x7F) != 0)) return [];
        var found = new List<DiskPartition>();
        foreach (var p in primaries)
        {
            if (p.Type is 0x05 or 0x0F or 0x85) found.AddRange(Logical(read, p.Start, diskSize));
            else found.Add(new DiskPartition(p.Number, p.Start, p.Length));
        }
        return [.. found.OrderBy(p => p.Number)];
    }

    /// <summary>The logical partitions: a chain of extended boot records, each naming one partition (relative to itself) and the next record (relative to the extended partition).</summary>
    private static List<DiskPartition> Logical(Func<long, int, byte[]> read, long extendedStart, long diskSize)
    {
        var found = new List<DiskPartition>();
        var at = extendedStart;
        for (var number = 5; number < 5 + 128; number++)
        {
            var ebr = read(at, Sector);
            if (ebr.Length < Sector || ebr[510] != 0x55 || ebr[511] != 0xAA) break;
            var start = at + (long)BinaryPrimitives.ReadUInt32LittleEndian(ebr.AsSpan(446 + 8)) * Sector;
            var length = (long)BinaryPrimitives.ReadUInt32LittleEndian(ebr.AsSpan(446 + 12)) * Sector;
            if (ebr[446 + 4] != 0 && length > 0 && start + length <= diskSize) found.Add(new DiskPartition(number, start, length));
            var next = (long)BinaryPrimitives.ReadUInt32LittleEndian(ebr.AsSpan(462 + 8)) * Sector;
            if (ebr[462 + 4] == 0 || next == 0) break;
            at = extendedStart + next;
        }
        return found;
    }

    private static List<DiskPartition> Gpt(Func<long, int, byte[]> read, long diskSize)
    {
        var header = read(Sector, Sector);
        if (header.Length < 92 || !header.AsSpan(0, 8).SequenceEqual("EFI PART"u8)) throw new InvalidDataException("The disk's MBR says GPT, but its GPT header is missing.");
        var entriesAt = (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(72)) * Sector;
        var count = (int)Math.Min(BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(80)), 1024u);
        var size = (int)BinaryPrimitives.ReadUInt32LittleEndian(header.AsSpan(84));
        if (size is < 128 or > 4096) throw new InvalidDataException($"The disk's GPT has entries of {size} bytes (128 to 4096 are read).");
        var table = read(entriesAt, count * size);
        var found = new List<DiskPartition>();
        for (var i = 0; i < count && (i + 1) * size <= table.Length; i++)
        {
            var e = table.AsSpan(i * size, size);
            if (!e[..16].ContainsAnyExcept((byte)0)) continue; // an unused entry
            var first = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[32..]) * Sector;
            var last = (long)BinaryPrimitives.ReadUInt64LittleEndian(e[40..]) * Sector;
            if (first <= 0 || last < first || last + Sector > diskSize) continue;
            found.Add(new DiskPartition(i + 1, first, last - first + Sector));
        }
        return found;
    }
}
