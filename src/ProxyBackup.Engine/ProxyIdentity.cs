using System.Text.RegularExpressions;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>Which VM the appliance is: configured, or read from OpenNebula's contextualization (VMID).</summary>
public static partial class ProxyIdentity
{
    /// <summary>Where the one-context packages leave the context variables.</summary>
    public static readonly string[] ContextFiles = ["/var/run/one-context/one_env", "/run/one-context/one_env", "/mnt/context.sh", "/var/lib/one-context/context.sh"];

    [GeneratedRegex("""^\s*(?:export\s+)?VMID\s*=\s*["']?(\d+)["']?\s*$""", RegexOptions.Multiline)]
    private static partial Regex VmIdLine();

    public static int? FromContext(IEnumerable<string>? files = null)
    {
        foreach (var file in files ?? ContextFiles)
        {
            if (!File.Exists(file)) continue;
            var m = VmIdLine().Match(File.ReadAllText(file));
            if (m.Success) return int.Parse(m.Groups[1].Value, System.Globalization.CultureInfo.InvariantCulture);
        }
        return null;
    }

    /// <summary>Checks through the API that the proxy VM exists and runs; returns it.</summary>
    public static async Task<VirtualMachine> VerifyAsync(OneClient client, int proxyVmId, CancellationToken ct = default)
    {
        VirtualMachine vm;
        try { vm = await client.VmInfoAsync(proxyVmId, ct).ConfigureAwait(false); }
        catch (OneNotFoundException)
        {
            throw new JobFailedException($"The proxy VM {proxyVmId} does not exist in OpenNebula: set the proxy VM ID to the ID of the VM this appliance runs in.");
        }
        if (vm is not { State: VmState.Active, LcmState: LcmState.Running })
            throw new JobFailedException($"The proxy VM {proxyVmId} ({vm.Name}) is {vm.StateName}; it must be RUNNING to attach disks.");
        return vm;
    }
}
