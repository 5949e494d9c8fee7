using Microsoft.Extensions.Logging;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Scheduler;

public sealed partial class PolicyRunner
{
    /// <summary>
    /// Which proxies can back up a VM (docs/architecture.md, "Several proxies"): OpenNebula attaches
    /// an image only to a VM on a host of a cluster its datastore is in, and a backup attaches each
    /// disk's saved image (in the disk's own datastore) to the proxy. Read once per scheduling step.
    /// </summary>
    private sealed class Reach(int? proxyCluster, OneClient client, IPolicyStore store)
    {
        private IReadOnlyDictionary<int, OneDatastore>? _datastores;
        private readonly Dictionary<int, IReadOnlyList<OneDatastore>> _ofVm = [];
        private IReadOnlySet<int>? _served;

        /// <summary>The datastores of the disks a backup reads (image disks; volatile disks and CD-ROMs are not read).</summary>
        public async Task<IReadOnlyList<OneDatastore>> DatastoresAsync(VirtualMachine vm, CancellationToken ct)
        {
            if (_ofVm.TryGetValue(vm.Id, out var known)) return known;
            _datastores ??= (await client.DatastorePoolAsync(ct).ConfigureAwait(false)).ToDictionary(d => d.Id);
            return _ofVm[vm.Id] = [.. vm.Disks.Where(d => !d.IsVolatile && !d.IsCdrom && d.DatastoreId is not null)
                .Select(d => d.DatastoreId!.Value).Distinct().Select(id => _datastores.GetValueOrDefault(id)).OfType<OneDatastore>()];
        }

        private async Task<bool> ReachedFromAsync(VirtualMachine vm, int cluster, CancellationToken ct) =>
            (await DatastoresAsync(vm, ct).ConfigureAwait(false)).All(d => d.Clusters.Contains(cluster));

        public async Task<bool> ServedHereAsync(VirtualMachine vm, CancellationToken ct) =>
            proxyCluster is not { } here || await ReachedFromAsync(vm, here, ct).ConfigureAwait(false);

        /// <summary>Whether a proxy with a live lease (this one included) runs in a cluster that reaches the VM.</summary>
        public async Task<bool> ServedByAnyAsync(VirtualMachine vm, CancellationToken ct)
        {
            _served ??= store.ServedClusters();
            foreach (var cluster in _served)
                if (await ReachedFromAsync(vm, cluster, ct).ConfigureAwait(false)) return true;
            return false;
        }
    }

    /// <summary>VMs told to be served by no proxy, so that each is told once until it is served again.</summary>
    private readonly HashSet<int> _unreachableTold = [];

    /// <summary>A VM no proxy can back up: logged and notified once (docs/operations.md, "A shared catalog").</summary>
    private void NotifyUnreachable(QueuedRun run, VirtualMachine vm, IReadOnlyList<OneDatastore> datastores)
    {
        var where = string.Join(", ", datastores.Select(d => $"datastore {d.Id} ({d.Name}) in cluster(s) {string.Join(",", d.Clusters)}"));
        logger.LogError("Policy {Policy}: VM {VmId} ({Name}) is not backed up: no proxy runs in a cluster that reaches its disks ({Where})", run.Policy, vm.Id, vm.Name, where);
        if (!_unreachableTold.Add(vm.Id)) return;
        Notify(new Notification(NotificationEvent.VmUnreachable, $"VM {vm.Id} ({vm.Name}) is not backed up: no proxy reaches its disks", run.Policy, vm.Id, vm.Name,
            $"Its disks are in {where}. A proxy attaches a disk only from a datastore of its own host's cluster: run a proxy VM in one of these clusters (docs/operations.md, \"A shared catalog\"), or add its cluster to the datastore."));
    }
}
