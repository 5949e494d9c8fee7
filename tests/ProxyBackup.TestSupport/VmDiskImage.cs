namespace ProxyBackup.TestSupport;

/// <summary>
/// A guest's disk as a real VM has one, made with the real tools: a GPT partition table; partition 1
/// ext4 (hello.txt, dir/sub/note, a symbolic link "escape" to /etc/passwd); partition 2 xfs (xfs.txt);
/// partition 3 an LVM physical volume of a volume group named by the caller (tests running at once
/// must not share one: LVM on this machine sees both while they are built) whose logical volume "data" is ext4
/// (lvm.txt) in two segments that are not next to each other. LVM's metadata is written with
/// vgcfgrestore, which needs no device-mapper (the machines these tests run on may lack it).
/// </summary>
public static class VmDiskImage
{
    public const long Size = 96L << 20;

    /// <summary>Why this machine cannot build the image, or null.</summary>
    public static string? Missing()
    {
        if (!Environment.IsPrivilegedProcess) return "needs root (loop devices and mounts)";
        if (!File.Exists("/dev/fuse")) return "the kernel offers no FUSE (/dev/fuse)";
        foreach (var tool in new[] { "sfdisk", "partx", "mkfs.ext4", "mkfs.xfs", "pvcreate", "vgcfgrestore", "losetup", "blkid" })
            if (!new[] { "/usr/sbin", "/sbin", "/usr/bin", "/bin" }.Any(d => File.Exists(Path.Combine(d, tool)))) return $"{tool} is not installed (scripts/test installs fdisk, xfsprogs and lvm2)";
        return null;
    }

    public static void Build(string image, string work, string volumeGroup)
    {
        Directory.CreateDirectory(work);
        var script = Path.Combine(work, "make-disk.sh");
        File.WriteAllText(script, """
            set -eu
            img=$1; work=$2; vg=$3
            truncate -s 96M "$img"
            printf 'label: gpt\nsize=32MiB, type=linux\nsize=24MiB, type=linux\ntype=lvm\n' | sfdisk -q "$img"
            part() { partx -g -n "$1" -o START,SECTORS "$img" | awk '{print $1*512, $2*512}'; }
            read s1 n1 <<< "$(part 1)"; read s2 n2 <<< "$(part 2)"; read s3 n3 <<< "$(part 3)"
            mkdir -p "$work/ext4/dir/sub" "$work/lvm" "$work/mnt"
            echo "hello from ext4" > "$work/ext4/hello.txt"
            echo "a note" > "$work/ext4/dir/sub/note"
            ln -s /etc/passwd "$work/ext4/escape"
            l=$(losetup -f --show -o "$s1" --sizelimit "$n1" "$img"); mkfs.ext4 -q -d "$work/ext4" "$l"; losetup -d "$l"
            l=$(losetup -f --show -o "$s2" --sizelimit "$n2" "$img")
            TEST_DIR=1 TEST_DEV=1 QA_CHECK_FS=1 mkfs.xfs -q "$l"; mount "$l" "$work/mnt"; echo "hello from xfs" > "$work/mnt/xfs.txt"; umount "$work/mnt"; losetup -d "$l"
            l=$(losetup -f --show -o "$s3" --sizelimit "$n3" "$img")
            export LVM_SUPPRESS_FD_WARNINGS=1
            pvcreate -q -ff -y --dataalignment 1m "$l" >/dev/null
            vgcreate -q -s 4M "$vg" "$l" >/dev/null
            vgcfgbackup -q -f "$work/vg.txt" "$vg" >/dev/null
            # LV data: 4 MiB at extent 1, then 12 MiB at extents 4-6 (two segments, a gap between them).
            python3 - "$work/vg.txt" <<'PY'
            import sys
            p = sys.argv[1]; s = open(p).read(); i = s.rindex('}')
            lv = '''
            logical_volumes {
            data {
            id = "AbCdEf-GhIj-KlMn-OpQr-StUv-WxYz-012345"
            status = ["READ", "WRITE", "VISIBLE"]
            flags = []
            segment_count = 2
            segment1 {
            start_extent = 0
            extent_count = 1
            type = "striped"
            stripe_count = 1
            stripes = ["pv0", 1]
            }
            segment2 {
            start_extent = 1
            extent_count = 3
            type = "striped"
            stripe_count = 1
            stripes = ["pv0", 4]
            }
            }
            }
            '''
            open(p, 'w').write(s[:i] + lv + s[i:])
            PY
            vgcfgrestore -q -f "$work/vg.txt" "$vg" >/dev/null 2>&1 || vgcfgrestore -f "$work/vg.txt" "$vg"
            pe=$(pvs --noheadings --units b --nosuffix -o pe_start "$l" 2>/dev/null | tr -d ' ')
            vgexport "$vg" >/dev/null 2>&1 || true
            losetup -d "$l"
            rm -f "/etc/lvm/backup/$vg" /etc/lvm/archive/"$vg"_*
            # The LV's bytes: a file made of its two runs, formatted, then written back into place.
            dd if=/dev/zero of="$work/lv.raw" bs=1M count=16 status=none
            echo "hello from lvm" > "$work/lvm/lvm.txt"
            mkfs.ext4 -q -d "$work/lvm" "$work/lv.raw"
            dd if="$work/lv.raw" of="$img" bs=1M count=4 seek=$(( (s3 + pe) / 1048576 + 4 )) conv=notrunc status=none
            dd if="$work/lv.raw" of="$img" bs=1M skip=4 count=12 seek=$(( (s3 + pe) / 1048576 + 16 )) conv=notrunc status=none
            """);
        var (code, output, error) = ChildProcess.Run("bash", script, image, work, volumeGroup);
        if (code != 0) throw new InvalidOperationException($"Building the test disk failed ({code}): {error}{output}");
    }
}

/// <summary>A test that builds a guest disk with the real tools and reads it through FUSE, loop devices and mounts; skipped, with the reason, where this machine cannot.</summary>
public sealed class GuestDiskFactAttribute : Xunit.FactAttribute
{
    public GuestDiskFactAttribute()
    {
        if (VmDiskImage.Missing() is { } why) Skip = why;
    }
}
