using Xunit;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace ProxyBackup.TestSupport;

/// <summary>
/// A catalog test, run once on each catalog engine: its one parameter is "sqlite" or "postgres"
/// (<see cref="CatalogEngines"/>). The PostgreSQL run says skipped, with the reason, where
/// <see cref="PostgresTestServer"/> cannot run.
/// </summary>
[XunitTestCaseDiscoverer("ProxyBackup.TestSupport.CatalogTheoryDiscoverer", "ProxyBackup.TestSupport")]
[AttributeUsage(AttributeTargets.Method)]
public sealed class CatalogTheoryAttribute : FactAttribute;

public static class CatalogEngines
{
    public const string Sqlite = "sqlite";
    public const string Postgres = "postgres";
}

public sealed class CatalogTheoryDiscoverer(IMessageSink diagnostics) : IXunitTestCaseDiscoverer
{
    public IEnumerable<IXunitTestCase> Discover(ITestFrameworkDiscoveryOptions discoveryOptions, ITestMethod testMethod, IAttributeInfo factAttribute)
    {
        var display = discoveryOptions.MethodDisplayOrDefault();
        var displayOptions = discoveryOptions.MethodDisplayOptionsOrDefault();
        yield return new XunitTestCase(diagnostics, display, displayOptions, testMethod, [CatalogEngines.Sqlite]);
        yield return PostgresTestServer.Unavailable() is { } why
            ? new XunitSkippedDataRowTestCase(diagnostics, display, displayOptions, testMethod, why, [CatalogEngines.Postgres])
            : new XunitTestCase(diagnostics, display, displayOptions, testMethod, [CatalogEngines.Postgres]);
    }
}
