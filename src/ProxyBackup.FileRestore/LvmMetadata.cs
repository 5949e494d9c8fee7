using System.Buffers.Binary;
using System.Globalization;
using System.Text;

namespace ProxyBackup.FileRestore;

/// <summary>An LVM physical volume found on a device: its UUID, the volume group it belongs to, and that group's metadata as it stores it.</summary>
internal sealed record LvmPhysicalVolume(string Uuid, string VolumeGroup, LvmVolumeGroup Group);

/// <summary>A logical volume's extents, in order: each is a run of bytes on one physical volume (by its UUID).</summary>
internal sealed record LvmLogicalVolume(string VolumeGroup, string Name, IReadOnlyList<(string PvUuid, long Offset, long Length)> Extents, string? Unsupported);

internal sealed record LvmVolumeGroup(string Name, IReadOnlyList<LvmLogicalVolume> Volumes);

/// <summary>
/// Reads LVM2's on-disk metadata without LVM or device-mapper (docs/operations.md, "File-level
/// restore"): the label in one of the first four sectors, the physical volume header, the metadata
/// area's header and its newest text, and from that text the volume group's linear logical volumes
/// as byte runs on their physical volumes. The appliance's own LVM never sees the restore point's
/// volumes (its filter keeps attached disks out), and no device-mapper is needed to read them.
/// Striped, mirrored, RAID, thin and cache volumes are named and left out.
/// </summary>
internal static class LvmMetadata
{
    private const int Sector = 512;
    private static readonly byte[] LabelId = "LABELONE"u8.ToArray();
    private static readonly byte[] LabelType = "LVM2 001"u8.ToArray();
    private static readonly byte[] MdaMagic = " LVM2 x[5A%r0N*>"u8.ToArray();

    /// <summary>Largest metadata text read (LVM's own default area is 1 MiB).</summary>
    private const int MaxText = 16 << 20;

    /// <summary>The physical volume on <paramref name="read"/> (a device read at offsets), or null when it has no LVM2 label.</summary>
    public static LvmPhysicalVolume? Read(Func<long, int, byte[]> read)
    {
        var head = read(0, 4 * Sector);
        for (var s = 0; s < 4; s++)
        {
            var label = head.AsSpan(s * Sector, Sector);
            if (!label[..8].SequenceEqual(LabelId) || !label.Slice(24, 8).SequenceEqual(LabelType)) continue;
            var pvHeader = label[(int)BinaryPrimitives.ReadUInt32LittleEndian(label[20..])..];
            var uuid = Encoding.ASCII.GetString(pvHeader[..32]);
            // After the UUID and the device size: data areas, a zero entry, metadata areas, a zero entry (16 bytes each).
            var at = 40;
            while (BinaryPrimitives.ReadUInt64LittleEndian(pvHeader[at..]) != 0) at += 16;
            at += 16;
            var mdaOffset = (long)BinaryPrimitives.ReadUInt64LittleEndian(pvHeader[at..]);
            var mdaSize = (long)BinaryPrimitives.ReadUInt64LittleEndian(pvHeader[(at + 8)..]);
            if (mdaOffset == 0) throw new InvalidDataException($"LVM physical volume {uuid} has no metadata area on this disk.");
            var text = MetadataText(read, mdaOffset, mdaSize);
            var group = ParseGroup(text);
            return new LvmPhysicalVolume(Canonical(uuid), group.Name, group);
        }
        return null;
    }

    /// <summary>The newest metadata text of the area: the first raw location of its header, wrapping round the circular buffer.</summary>
    private static string MetadataText(Func<long, int, byte[]> read, long mdaOffset, long mdaSize)
    {
        var header = read(mdaOffset, Sector);
        if (!header.AsSpan(4, 16).SequenceEqual(MdaMagic)) throw new InvalidDataException("The LVM metadata area's header is not LVM2's.");
        var (locnOffset, locnSize) = ((long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(40)), (long)BinaryPrimitives.ReadUInt64LittleEndian(header.AsSpan(48)));
        if (locnSize is <= 0 or > MaxText || mdaSize is <= Sector or > MaxText || locnOffset < Sector || locnOffset >= mdaSize)
            throw new InvalidDataException("The LVM metadata area's header points outside the area.");
        var first = Math.Min(locnSize, mdaSize - locnOffset);
        var bytes = read(mdaOffset + locnOffset, (int)first);
        if (first < locnSize) bytes = [.. bytes, .. read(mdaOffset + Sector, (int)(locnSize - first))]; // wrapped after the header
        return Encoding.ASCII.GetString(bytes).TrimEnd('\0');
    }

    /// <summary>LVM prints a UUID in groups (xxxxxx-xxxx-...); the label stores it bare.</summary>
    private static string Canonical(string uuid) => uuid.Replace("-", "", StringComparison.Ordinal);

    private static LvmVolumeGroup ParseGroup(string text)
    {
        var root = new TextParser(text).Section();
        var (name, vg) = root.Sections.FirstOrDefault();
        if (vg is null) throw new InvalidDataException("The LVM metadata names no volume group.");
        var extentBytes = vg.Long("extent_size") * Sector;
        var pvs = vg.Section("physical_volumes").Sections.ToDictionary(p => p.Name,
            p => (Uuid: Canonical(p.Value.String("id")), Start: p.Value.Long("pe_start") * Sector), StringComparer.Ordinal);
        var volumes = new List<LvmLogicalVolume>();
        foreach (var (lvName, lv) in vg.SectionOrEmpty("logical_volumes").Sections)
        {
            var extents = new List<(string, long, long)>();
            string? unsupported = null;
            foreach (var (_, segment) in lv.Sections.Where(s => s.Name.StartsWith("segment", StringComparison.Ordinal)).OrderBy(s => s.Value.Long("start_extent")))
            {
                var type = segment.String("type");
                var stripes = segment.Array("stripes");
                if (type != "striped" || segment.Long("stripe_count") != 1 || stripes.Count != 2)
                {
                    unsupported = $"a {type} volume{(type == "striped" ? $" of {segment.Long("stripe_count")} stripes" : "")}: only linear volumes are read";
                    break;
                }
                if (!pvs.TryGetValue(stripes[0], out var pv)) { unsupported = $"it names physical volume {stripes[0]}, which the metadata lacks"; break; }
                var firstExtent = long.Parse(stripes[1], CultureInfo.InvariantCulture);
                extents.Add((pv.Uuid, pv.Start + firstExtent * extentBytes, segment.Long("extent_count") * extentBytes));
            }
            volumes.Add(new LvmLogicalVolume(name, lvName, extents, unsupported));
        }
        return new LvmVolumeGroup(name, volumes);
    }

    /// <summary>A section of LVM's metadata text: values (numbers, strings, arrays) and named sub-sections.</summary>
    private sealed class Node
    {
        public Dictionary<string, object> Values { get; } = new(StringComparer.Ordinal);
        public List<(string Name, Node Value)> Sections { get; } = [];

        public Node Section(string name) => Sections.FirstOrDefault(s => s.Name == name).Value ?? throw new InvalidDataException($"The LVM metadata lacks '{name}'.");
        public Node SectionOrEmpty(string name) => Sections.FirstOrDefault(s => s.Name == name).Value ?? new Node();
        public string String(string key) => Values.TryGetValue(key, out var v) && v is string s ? s : throw new InvalidDataException($"The LVM metadata lacks '{key}'.");
        public long Long(string key) => long.Parse(String(key), CultureInfo.InvariantCulture);
        public List<string> Array(string key) => Values.TryGetValue(key, out var v) && v is List<string> a ? a : [];
    }

    /// <summary>LVM's metadata syntax: <c>name { ... }</c>, <c>key = value</c>, values quoted strings, numbers or <c>[ ... ]</c>; # starts a comment.</summary>
    private sealed class TextParser(string text)
    {
        private int _at;

        public Node Section()
        {
            var node = new Node();
            while (true)
            {
                SkipSpace();
                if (_at >= text.Length || text[_at] == '}') { _at++; return node; }
                var name = Word();
                SkipSpace();
                if (_at < text.Length && text[_at] == '{')
                {
                    _at++;
                    node.Sections.Add((name, Section()));
                    continue;
                }
                if (_at >= text.Length || text[_at] != '=') throw new InvalidDataException($"The LVM metadata is not LVM's text format near '{name}'.");
                _at++;
                SkipSpace();
                node.Values[name] = text[_at] == '[' ? List() : Scalar();
            }
        }

        private List<string> List()
        {
            _at++;
            var items = new List<string>();
            while (true)
            {
                SkipSpace();
                if (text[_at] == ']') { _at++; return items; }
                if (text[_at] == ',') { _at++; continue; }
                items.Add(Scalar());
            }
        }

        private string Scalar()
        {
            if (text[_at] != '"') return Word();
            var end = text.IndexOf('"', _at + 1);
            if (end < 0) throw new InvalidDataException("The LVM metadata has an unterminated string.");
            var s = text[(_at + 1)..end];
            _at = end + 1;
            return s;
        }

        private string Word()
        {
            var start = _at;
            while (_at < text.Length && !char.IsWhiteSpace(text[_at]) && text[_at] is not ('=' or '{' or '}' or '[' or ']' or ',' or '#')) _at++;
            if (_at == start) throw new InvalidDataException($"The LVM metadata has an unexpected '{text[_at]}'.");
            return text[start.._at];
        }

        private void SkipSpace()
        {
            while (_at < text.Length)
            {
                if (char.IsWhiteSpace(text[_at])) _at++;
                else if (text[_at] == '#') { while (_at < text.Length && text[_at] != '\n') _at++; }
                else return;
            }
        }
    }
}
