using System.Globalization;

namespace ProxyBackup.Engine;

/// <summary>
/// How the restore points of one cloud's VMs are named in a repository (docs/repository-format.md,
/// "Tags and metadata the engine writes"): <c>vm-ID</c>, or <c>CLOUD.vm-ID</c> once the cloud has a
/// name (OpenNebula:Cloud), so that clouds sharing a repository never put two VMs in one series.
/// </summary>
public sealed record VmSources
{
    public VmSources(string? cloud)
    {
        if (cloud is not null && !IsCloudName(cloud))
            throw new ArgumentException($"'{cloud}' is not a cloud name: 1 to 63 of a-z, 0-9 and '-', starting with a letter or digit.");
        Cloud = cloud;
    }

    /// <summary>The cloud's name, or null for a repository only one cloud uses (the sources of release 1).</summary>
    public string? Cloud { get; }

    private string Prefix => Cloud is null ? "vm-" : $"{Cloud}.vm-";

    public string Of(int vmId) => Prefix + vmId.ToString(CultureInfo.InvariantCulture);

    /// <summary>The VM of a source of this cloud; false for another cloud's source (or one not made by the engine).</summary>
    public bool TryVmId(string source, out int vmId)
    {
        vmId = -1;
        return source.StartsWith(Prefix, StringComparison.Ordinal) && int.TryParse(source.AsSpan(Prefix.Length), NumberStyles.None, CultureInfo.InvariantCulture, out vmId);
    }

    public static bool IsCloudName(string name) =>
        name.Length is >= 1 and <= 63 && char.IsAsciiLetterOrDigit(name[0]) && name.All(c => char.IsAsciiLetterLower(c) || char.IsAsciiDigit(c) || c == '-');
}
