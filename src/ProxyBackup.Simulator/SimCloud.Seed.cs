using System.Text;
using System.Xml.Linq;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>The demo cloud created on first start, and the tool that changes a VM's disk content.</summary>
public sealed partial class SimCloud
{
    private static readonly string[] Words =
    [
        "backup", "restore", "snapshot", "cloud", "volume", "chunk", "proxy", "image", "datastore", "cluster",
        "kernel", "journal", "request", "session", "replica", "network", "schedule", "policy", "retention", "verify",
        "select", "insert", "update", "order", "customer", "invoice", "payment", "status", "error", "warning",
    ];

    /// <summary>
    /// Two hosts, a system and an image datastore, a proxy VM (USER_TEMPLATE/PROXY=YES) and three
    /// protected VMs whose disks hold a realistic mix: a third zeros, a third text-like, a third random.
    /// </summary>
    public void SeedDemo(long diskMb, int seed = 42)
    {
        lock (_gate)
        {
            if (!IsEmpty) return;
            _s.Hosts.Add(new SimHost { Id = _s.NextHostId++, Name = "kvm-01" });
            _s.Hosts.Add(new SimHost { Id = _s.NextHostId++, Name = "kvm-02" });
            _s.Datastores.Add(new SimDatastore { Id = _s.NextDatastoreId++, Name = "system", Type = DatastoreType.System, TmMad = "qcow2", TotalMb = 1_000_000, AllowOrphans = "FORMAT" });
            _s.Datastores.Add(new SimDatastore { Id = _s.NextDatastoreId++, Name = "default", Type = DatastoreType.Image, TmMad = "qcow2", TotalMb = 1_000_000, AllowOrphans = "FORMAT" });
            _s.Datastores.Add(new SimDatastore { Id = _s.NextDatastoreId++, Name = "files", Type = DatastoreType.File, TmMad = "ssh", TotalMb = 100_000 });
            var rnd = new Random(seed);
            var os = SeedImage("debian12", ImageType.Os, diskMb, persistent: false, rnd);
            var web = SeedImage("web-data", ImageType.Datablock, Math.Max(1, diskMb / 2), persistent: false, rnd);
            var db = SeedImage("db-data", ImageType.Datablock, diskMb, persistent: true, rnd);
            var proxyOs = SeedImage("proxybackup-appliance", ImageType.Os, Math.Max(1, diskMb / 4), persistent: false, rnd);
            Save();
            CreateVm(TemplateParser.Parse($"NAME = \"proxybackup\"\n{VmCommon}{Disk(proxyOs)}PROXY = \"YES\"\n"), false, 0, null, null);
            CreateVm(TemplateParser.Parse($"NAME = \"web-01\"\n{VmCommon}{Disk(os)}{Disk(web)}LABELS = \"prod,web\"\nBACKUP_POLICY = \"gold\"\n"), false, 0, null, null);
            CreateVm(TemplateParser.Parse($"NAME = \"db-01\"\n{VmCommon}{Disk(os)}{Disk(db)}DISK = [ TYPE = \"swap\", SIZE = \"{Math.Max(1, diskMb / 4)}\" ]\nLABELS = \"prod,db\"\nBACKUP_POLICY = \"gold\"\n"), false, 0, null, null);
            CreateVm(TemplateParser.Parse($"NAME = \"dev-01\"\n{VmCommon}{Disk(os)}LABELS = \"dev\"\n"), false, 0, null, null);
        }
    }

    private static string Disk(int image) => $"DISK = [ IMAGE_ID = \"{image}\", DEV_PREFIX = \"vd\" ]\n";

    private const string VmCommon = "CPU = \"1\"\nVCPU = \"2\"\nMEMORY = \"2048\"\nOS = [ ARCH = \"x86_64\" ]\nGRAPHICS = [ TYPE = \"vnc\", LISTEN = \"0.0.0.0\" ]\nNIC = [ NETWORK = \"lan\", NETWORK_UNAME = \"oneadmin\" ]\nCONTEXT = [ NETWORK = \"YES\", SSH_PUBLIC_KEY = \"$USER[SSH_PUBLIC_KEY]\" ]\n";

    /// <summary>
    /// A fleet beside the demo cloud (after <see cref="SeedDemo"/>): <paramref name="vms"/> VMs
    /// fleet-001... (label "fleet"), each with one disk of <paramref name="diskMb"/> MiB of its own
    /// content, and <paramref name="extraProxies"/> more proxy VMs proxybackup-2... (several proxies
    /// sharing one catalog).
    /// </summary>
    /// <param name="clusters">With more than one, clusters 1... are added, each with a host (kvm-cN) and an image datastore
    /// (images-cN) only its hosts reach; fleet VM i has its disk in cluster (i - 1) mod <paramref name="clusters"/>, and proxy
    /// VM p runs in cluster (p - 1) mod <paramref name="clusters"/> (the demo's datastores and the first proxy stay in cluster 0,
    /// the system datastore and the images' "default" datastore reach every cluster).</param>
    public void SeedFleet(int vms, long diskMb, int extraProxies, int seed = 7, int clusters = 1)
    {
        lock (_gate)
        {
            var rnd = new Random(seed);
            var proxyOs = _s.Images.FirstOrDefault(i => i.Name == "proxybackup-appliance")?.Id
                ?? throw new InvalidOperationException("SeedFleet adds to the demo cloud: seed it first (SeedDemo).");
            var datastores = new Dictionary<int, int> { [0] = _s.Datastores.First(d => d.Name == "default").Id };
            var hosts = new Dictionary<int, int> { [0] = _s.Hosts.First(h => h.ClusterId == 0).Id };
            for (var c = 1; c < clusters; c++)
            {
                hosts[c] = _s.NextHostId;
                _s.Hosts.Add(new SimHost { Id = _s.NextHostId++, Name = $"kvm-c{c}", ClusterId = c });
                datastores[c] = _s.NextDatastoreId;
                _s.Datastores.Add(new SimDatastore { Id = _s.NextDatastoreId++, Name = $"images-c{c}", Type = DatastoreType.Image, TmMad = "qcow2", TotalMb = 1_000_000, AllowOrphans = "FORMAT", Clusters = [c] });
            }
            foreach (var shared in _s.Datastores.Where(d => d.Type == DatastoreType.System || d.Name == "default")) shared.Clusters = [.. Enumerable.Range(0, Math.Max(1, clusters))];
            var images = Enumerable.Range(1, vms).Select(i => SeedImage($"fleet-{i:000}-data", ImageType.Datablock, diskMb, persistent: false, rnd, datastores[(i - 1) % Math.Max(1, clusters)])).ToList();
            Save();
            for (var p = 2; p < 2 + extraProxies; p++)
            {
                var proxy = CreateVm(TemplateParser.Parse($"NAME = \"proxybackup-{p}\"\n{VmCommon}{Disk(proxyOs)}PROXY = \"YES\"\n"), clusters > 1, 0, null, null);
                if (clusters > 1) VmDeploy(proxy, hosts[(p - 1) % clusters], -1);
            }
            for (var i = 1; i <= vms; i++)
                CreateVm(TemplateParser.Parse($"NAME = \"fleet-{i:000}\"\n{VmCommon}{Disk(images[i - 1])}LABELS = \"fleet\"\n"), false, 0, null, null);
        }
    }

    /// <summary>The name a cluster has in documents: "default" for cluster 0, as in a new OpenNebula.</summary>
    public static string ClusterName(int id) => id == 0 ? "default" : $"cluster-{id}";

    /// <summary>The clusters whose hosts reach every image datastore of the VM's disks; null when it has no image disk (any host).</summary>
    private List<int>? ClustersReaching(SimVm vm)
    {
        List<int>? reaching = null;
        foreach (var disk in vm.Disks)
            if (ImageOf(disk) is { } image && Datastore(image.DatastoreId) is { } store)
                reaching = reaching is null ? [.. store.Clusters] : [.. reaching.Intersect(store.Clusters)];
        return reaching;
    }

    private int SeedImage(string name, ImageType type, long sizeMb, bool persistent, Random rnd, int datastoreId = 1)
    {
        var image = NewImage(name, type, sizeMb, datastoreId, "raw", persistent);
        image.Template["DEV_PREFIX"] = "vd";
        image.State = ImageState.Ready;
        WriteMixedContent(ImageFile(image.Id), sizeMb * MiB, rnd);
        return image.Id;
    }

    private static void WriteMixedContent(string path, long bytes, Random rnd)
    {
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var f = new FileStream(path, FileMode.Create, FileAccess.Write);
        f.SetLength(bytes);
        var third = bytes / 3 / 4096 * 4096;
        f.Position = third; // the first third stays zero (a hole)
        var line = 0L;
        var text = new StringBuilder();
        while (f.Position < 2 * third)
        {
            text.Clear();
            while (text.Length < 1 << 20)
            {
                text.Append("row ").Append(line++).Append(':');
                for (var w = 0; w < 8; w++) text.Append(' ').Append(Words[rnd.Next(Words.Length)]);
                text.Append('\n');
            }
            var chunk = Encoding.ASCII.GetBytes(text.ToString());
            f.Write(chunk, 0, (int)Math.Min(chunk.Length, 2 * third - f.Position));
        }
        var random = new byte[1 << 20];
        while (f.Position < bytes)
        {
            rnd.NextBytes(random);
            f.Write(random, 0, (int)Math.Min(random.Length, bytes - f.Position));
        }
    }

    /// <summary>Writes random blocks at random offsets of a VM's disk, as a running guest would; returns the bytes written.</summary>
    public long MutateDisk(int vmId, int diskId, int blocks, int blockSize, int seed)
    {
        if (blocks < 0 || blockSize <= 0) throw new SimFailure(OneErrorCode.XmlRpcApi, "blocks must be ≥ 0 and block size > 0.");
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            var disk = vm.Disk(diskId) ?? throw new SimFailure(OneErrorCode.Action, "VM disk does not exist.", vmId);
            if (Yes(disk, "READONLY")) throw new SimFailure(OneErrorCode.Action, "The disk is read-only.", vmId);
            var path = DiskFile(vm, disk);
            var rnd = new Random(seed);
            var data = new byte[blockSize];
            using var f = new FileStream(path, FileMode.Open, FileAccess.Write, FileShare.ReadWrite);
            var slots = f.Length / blockSize;
            if (slots == 0) return 0;
            for (var i = 0; i < blocks; i++)
            {
                rnd.NextBytes(data);
                f.Position = rnd.NextInt64(slots) * blockSize;
                f.Write(data);
            }
            f.Flush(flushToDisk: true);
            return (long)blocks * blockSize;
        }
    }

    /// <summary>The path of the file that holds a VM disk's current content (for tests and checksums).</summary>
    /// <summary>The moments of the data of every disk snapshot taken of a VM, in the order they were taken.</summary>
    public IReadOnlyList<SimSnapshotMoment> SnapshotMoments(int vmId)
    {
        lock (_gate) return [.. VmOrThrow(vmId).SnapshotMoments];
    }

    public string DiskContentPath(int vmId, int diskId)
    {
        lock (_gate)
        {
            var vm = VmOrThrow(vmId);
            return DiskFile(vm, vm.Disk(diskId) ?? throw new SimFailure(OneErrorCode.Action, "VM disk does not exist.", vmId));
        }
    }

    /// <summary>The path of the file that holds an image's content (for tests and checksums).</summary>
    public string ImageContentPath(int imageId)
    {
        lock (_gate) return ImageFile(ImageOrThrow(imageId).Id);
    }

    /// <summary>Waits (outside any call) until no VM is in a transient state: the seeded VMs take a moment to boot.</summary>
    public async Task WaitIdleAsync(TimeSpan timeout)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (DateTime.UtcNow < deadline)
        {
            lock (_gate)
                if (_s.Vms.All(v => v.State is VmState.Done or VmState.Hold || (v.State == VmState.Active && v.Lcm == LcmState.Running) || OneStateNames.Settlement(v.State, v.Lcm) == VmSettlement.Settled && v.State != VmState.Pending))
                    return;
            await Task.Delay(50).ConfigureAwait(false);
        }
        throw new TimeoutException("The simulated cloud did not settle.");
    }
}
