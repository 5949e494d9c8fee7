using System.Text.RegularExpressions;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Engine;

/// <summary>Which VM the appliance is: configured, or read from OpenNebula's contextualization (VMID).</summary>
public static partial class ProxyIdentity
{
    /// <summary>Where the one-context packages leave the context variables.</summary>
    public static readonly string[] ContextFiles = ["/var/run/one-context/one_env", "/run/one-context/one_env", "/mnt/context.sh", "/var/lib/one-context/context.sh"];

    [GeneratedRegex("""^\s*(?:export\s+)?([A-Za-z_][A-Za-z0-9_]*)=(.*)$""", RegexOptions.Multiline)]
    private static partial Regex AssignmentLine();

    /// <summary>
    /// The context variables (VMID, the PROXYBACKUP_* user inputs of the appliance template, ...)
    /// from the first context file that exists, as the one-context packages write them.
    /// </summary>
    public static IReadOnlyDictionary<string, string> ContextVariables(IEnumerable<string>? files = null)
    {
        foreach (var file in files ?? ContextFiles)
        {
            if (!File.Exists(file)) continue;
            var map = new Dictionary<string, string>(StringComparer.Ordinal);
            foreach (Match m in AssignmentLine().Matches(File.ReadAllText(file)))
                map[m.Groups[1].Value] = Unquote(m.Groups[2].Value.TrimEnd('\r'));
            return map;
        }
        return new Dictionary<string, string>();
    }

    private static string Unquote(string v)
    {
        v = v.Trim();
        if (v.Length >= 2 && v[0] == '\'' && v[^1] == '\'') return v[1..^1];
        if (v.Length >= 2 && v[0] == '"' && v[^1] == '"')
            return Regex.Replace(v[1..^1], "\\\\([\"\\\\$`])", "$1");
        return v;
    }

    public static int? FromContext(IEnumerable<string>? files = null) =>
        ContextVariables(files).TryGetValue("VMID", out var v) && int.TryParse(v, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var id) ? id : null;

    /// <summary>Checks through the API that the proxy VM exists and, unless <paramref name="mustRun"/> is false, runs; returns it.</summary>
    public static async Task<VirtualMachine> VerifyAsync(OneClient client, int proxyVmId, CancellationToken ct = default, bool mustRun = true)
    {
        VirtualMachine vm;
        try { vm = await client.VmInfoAsync(proxyVmId, ct).ConfigureAwait(false); }
        catch (OneNotFoundException)
        {
            throw new JobFailedException($"The proxy VM {proxyVmId} does not exist in OpenNebula: set the proxy VM ID to the ID of the VM this appliance runs in.");
        }
        // HOTPLUG: another job (the daemon's, another CLI's) is attaching or detaching a disk; this
        // job's own attach waits for the proxy to settle, so it is not a reason to refuse.
        if (mustRun && vm is not { State: VmState.Active, LcmState: LcmState.Running or LcmState.Hotplug })
            throw new JobFailedException($"The proxy VM {proxyVmId} ({vm.Name}) is {vm.StateName}; it must be RUNNING to attach disks.");
        return vm;
    }
}
