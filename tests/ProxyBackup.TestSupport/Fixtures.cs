namespace ProxyBackup.TestSupport;

/// <summary>
/// Documents captured from a real oned 6.10.5 (Fixtures/oned-6.10.5/README.md), copied beside the
/// test assemblies by the build: the tests need nothing outside the repository.
/// </summary>
public static class Fixtures
{
    public static string Path(string name)
    {
        var path = System.IO.Path.Combine(AppContext.BaseDirectory, "Fixtures", "oned-6.10.5", name);
        return File.Exists(path) ? path : throw new FileNotFoundException($"Fixture {name} is not in {System.IO.Path.GetDirectoryName(path)}; it belongs in tests/ProxyBackup.TestSupport/Fixtures/oned-6.10.5.", path);
    }
}
