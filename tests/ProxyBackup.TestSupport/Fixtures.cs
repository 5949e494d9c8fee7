namespace ProxyBackup.TestSupport;

/// <summary>Finds ../shared/fixtures/oned-6.10.5 next to the checkout, wherever the tests run from.</summary>
public static class Fixtures
{
    public static string Path(string name)
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
        {
            var candidate = System.IO.Path.Combine(dir.FullName, "shared", "fixtures", "oned-6.10.5", name);
            if (File.Exists(candidate)) return candidate;
        }
        throw new FileNotFoundException($"Fixture {name} not found in a shared/fixtures/oned-6.10.5 above {AppContext.BaseDirectory}.");
    }
}
