namespace ProxyBackup.Simulator;

/// <summary>
/// How disks attached to the proxy VM reach the appliance: a devices directory on this machine
/// (<see cref="SimDevices"/>), or hot-plugged into a real QEMU guest (<see cref="QmpDiskBus"/>).
/// </summary>
public interface IProxyDiskBus
{
    /// <summary>One line for the start-up banner.</summary>
    string Description { get; }

    /// <summary>Whether the proxy's own disks are shown as well (a QEMU guest already has its own).</summary>
    bool ShowsOwnDisks { get; }

    /// <summary>Makes a disk attached to proxy VM <paramref name="proxyVmId"/> present to it.</summary>
    SimDevice Expose(string backingFile, bool readOnly, int proxyVmId);

    /// <summary>After a restart of the simulator the attachments are made present again.</summary>
    void Reattach(SimDevice device);

    /// <summary>At shutdown of the simulator; the state keeps the attachment.</summary>
    void Suspend(SimDevice device);

    /// <summary>A detach: null when done, else why the guest has not let go of the device (virsh detach-disk fails then).</summary>
    string? TryRelease(SimDevice device);

    /// <summary>Unconditional removal (the VM is gone).</summary>
    void Remove(SimDevice device);
}
