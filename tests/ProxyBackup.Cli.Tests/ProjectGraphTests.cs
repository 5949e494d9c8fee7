using System.Text.RegularExpressions;
using System.Xml.Linq;

namespace ProxyBackup.Cli.Tests;

/// <summary>The project graph is the one docs/architecture.md ("Parts") draws: nothing reaches back.</summary>
public partial class ProjectGraphTests
{
    private static readonly string Root = SourceTree.Root;

    [GeneratedRegex(@"^ src/(ProxyBackup\.[A-Za-z.]+)\s", RegexOptions.Multiline)]
    private static partial Regex PartLine();

    /// <summary>The projects in the order of the architecture's list.</summary>
    private static List<string> DocumentedOrder() =>
        [.. PartLine().Matches(File.ReadAllText(Path.Combine(Root, "docs", "architecture.md"))).Select(m => m.Groups[1].Value)];

    private static Dictionary<string, XDocument> SourceProjects() =>
        Directory.GetDirectories(Path.Combine(Root, "src"))
            .Select(d => Path.Combine(d, Path.GetFileName(d) + ".csproj"))
            .Where(File.Exists)
            .ToDictionary(p => Path.GetFileNameWithoutExtension(p), p => XDocument.Load(p));

    private static IEnumerable<string> References(XDocument project) =>
        project.Descendants("ProjectReference").Select(r => Path.GetFileNameWithoutExtension(r.Attribute("Include")!.Value.Replace('\\', '/')));

    [Fact]
    public void Every_project_is_in_the_architecture_and_references_only_projects_listed_before_it()
    {
        var order = DocumentedOrder();
        var projects = SourceProjects();
        Assert.Equal(projects.Keys.Order(StringComparer.Ordinal), order.Order(StringComparer.Ordinal));
        var backwards = (from p in projects
                         from r in References(p.Value)
                         where order.IndexOf(r) >= order.IndexOf(p.Key)
                         select $"{p.Key} -> {r}").ToList();
        Assert.True(backwards.Count == 0, "References to a project listed at or after the referencing one: " + string.Join(", ", backwards));
    }

    [Fact]
    public void The_appliance_reaches_neither_the_simulator_nor_asp_net_core()
    {
        var projects = SourceProjects();
        var reached = new HashSet<string>();
        var pending = new Stack<string>(["ProxyBackup.Cli"]);
        while (pending.TryPop(out var name))
            if (reached.Add(name))
                foreach (var r in References(projects[name])) pending.Push(r);
        Assert.DoesNotContain("ProxyBackup.Simulator", reached);
        Assert.DoesNotContain("ProxyBackup.Demo", reached);
        var web = reached.Where(p => projects[p].Descendants("FrameworkReference").Any(f => f.Attribute("Include")?.Value == "Microsoft.AspNetCore.App")).ToList();
        Assert.True(web.Count == 0, "The appliance reaches ASP.NET Core through " + string.Join(", ", web));
    }
}
