using Xunit;

namespace ProxyBackup.TestSupport;

/// <summary>A test that needs root (mounts, loop devices); skipped, with the reason, otherwise.</summary>
public sealed class RootFactAttribute : FactAttribute
{
    public RootFactAttribute()
    {
        if (!Environment.IsPrivilegedProcess) Skip = "needs root (it mounts file systems)";
    }
}
