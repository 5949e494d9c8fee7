using ProxyBackup.OpenNebula;

namespace ProxyBackup.Scheduler;

/// <summary>Limits on what runs at once: overall, per host, per datastore (0: no limit).</summary>
public sealed record QueueLimits(int MaxConcurrent = 2, int MaxPerHost = 1, int MaxPerDatastore = 2);

/// <summary>One VM waiting to be backed up.</summary>
public sealed record QueuedBackup(int VmId, string VmName, int HostId, IReadOnlyList<int> DatastoreIds, DueRun Run, int Attempt = 1)
{
    public int Priority => Run.Policy.Priority;

    /// <summary>A VM for a run, with the host and datastores the queue's limits count.</summary>
    public static QueuedBackup Of(VirtualMachine vm, DueRun run) =>
        new(vm.Id, vm.Name, vm.CurrentHistory?.HostId ?? -1, [.. vm.Disks.Select(d => d.DatastoreId).OfType<int>().Distinct()], run);
}

/// <summary>
/// The backup queue: highest priority first, then first come; an item starts only while the
/// overall, per-host and per-datastore limits allow, and never after its backup window closed.
/// A VM is queued once at a time. A running item counts against the limits until it is finished
/// or, earlier, its disks are read (<see cref="DisksRead"/>).
/// </summary>
public sealed class JobQueue(QueueLimits limits)
{
    private readonly object _gate = new();
    private readonly List<(QueuedBackup Item, long Order)> _waiting = [];
    private readonly List<QueuedBackup> _running = [];
    // Running items whose disks are read: still running (their VM is not queued again), no
    // longer counted against the limits.
    private readonly HashSet<QueuedBackup> _disksRead = [];
    private long _order;

    public int Waiting { get { lock (_gate) return _waiting.Count; } }
    public IReadOnlyList<QueuedBackup> Running { get { lock (_gate) return [.. _running]; } }

    /// <summary>
    /// What waits and what runs, read in one step: an item moving from one to the other is in
    /// exactly one of them, so a client polling for "done" never sees it missing halfway.
    /// </summary>
    public (IReadOnlyList<QueuedBackup> Waiting, IReadOnlyList<QueuedBackup> Running) Snapshot()
    {
        lock (_gate) return ([.. _waiting.Select(w => w.Item)], [.. _running]);
    }

    /// <summary>False when the VM is already waiting or running.</summary>
    public bool Enqueue(QueuedBackup item)
    {
        lock (_gate)
        {
            if (_waiting.Any(w => w.Item.VmId == item.VmId) || _running.Any(r => r.VmId == item.VmId)) return false;
            _waiting.Add((item, _order++));
            return true;
        }
    }

    /// <summary>The next item that may start now, marked running; items whose window closed are returned as expired.</summary>
    public (QueuedBackup? Next, IReadOnlyList<QueuedBackup> Expired) TryStart(DateTimeOffset now)
    {
        lock (_gate)
        {
            var expired = _waiting.Where(w => w.Item.Run.StartNoLaterThan is { } d && d < now).Select(w => w.Item).ToList();
            _waiting.RemoveAll(w => expired.Contains(w.Item));
            var counted = _running.Where(r => !_disksRead.Contains(r)).ToList();
            if (limits.MaxConcurrent > 0 && counted.Count >= limits.MaxConcurrent) return (null, expired);
            foreach (var (item, _) in _waiting.OrderByDescending(w => w.Item.Priority).ThenBy(w => w.Order))
            {
                if (limits.MaxPerHost > 0 && counted.Count(r => r.HostId == item.HostId) >= limits.MaxPerHost) continue;
                if (limits.MaxPerDatastore > 0 && item.DatastoreIds.Any(ds => counted.Count(r => r.DatastoreIds.Contains(ds)) >= limits.MaxPerDatastore)) continue;
                _waiting.RemoveAll(w => w.Item == item);
                _running.Add(item);
                return (item, expired);
            }
            return (null, expired);
        }
    }

    /// <summary>The item's disks are read: what is left of its job (detach, deletes, the commit, retention) does not hold up the next item.</summary>
    public void DisksRead(QueuedBackup item)
    {
        lock (_gate)
            if (_running.Contains(item)) _disksRead.Add(item);
    }

    public void Finished(QueuedBackup item)
    {
        lock (_gate) Unlist(item);
    }

    // Under _gate.
    private void Unlist(QueuedBackup item)
    {
        _running.Remove(item);
        _disksRead.Remove(item);
    }

    /// <summary>
    /// A failed item goes back to the end of the queue as its next attempt, in one step, so that its
    /// VM stays listed and no other backup of it is queued in between.
    /// </summary>
    public QueuedBackup Retry(QueuedBackup failed)
    {
        var next = failed with { Attempt = failed.Attempt + 1 };
        lock (_gate)
        {
            Unlist(failed);
            _waiting.Add((next, _order++));
        }
        return next;
    }
}
