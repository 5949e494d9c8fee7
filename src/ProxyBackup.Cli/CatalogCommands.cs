using System.CommandLine;
using ProxyBackup.Catalog;
using ProxyBackup.Engine;

namespace ProxyBackup.Cli;

/// <summary>`proxybackup catalog rebuild|points`: the catalog's restore point list, rebuilt from the repository.</summary>
internal static class CatalogCommands
{
    public static Command Build()
    {
        var cmd = new Command("catalog", "The catalog's index of restore points.");
        cmd.Options.Add(EngineHost.Catalog);
        cmd.Options.Add(RepositoryCommands.Repo);
        cmd.Options.Add(RepositoryCommands.PassphraseFile);
        cmd.Options.Add(RepositoryCommands.KeyFile);
        cmd.Options.Add(DaemonCommand.ConfigFile);
        var rebuild = new Command("rebuild", "Rebuild the restore point list from the repository alone (after losing the catalog).");
        rebuild.SetAction(p =>
        {
            var count = EngineHost.CatalogOf(p).Open().Rebuild(RepositoryCommands.Open(p), EngineHost.SourcesOf(p));
            Console.WriteLine($"Indexed {count} restore point(s).");
            return 0;
        });
        var json = new Option<bool>("--json");
        var points = new Command("points", "Restore points as the catalog indexes them.") { json };
        points.SetAction(p =>
        {
            var list = EngineHost.CatalogOf(p).Open().ListedPoints();
            if (p.GetValue(json)) { CliFormat.PrintJson(list); return 0; }
            foreach (var x in list) Console.WriteLine($"{x.Source,-10} {x.Id}  {x.Time:yyyy-MM-dd HH:mm}Z  {x.VmName,-16} {x.Kind,-11} {x.Disks} disk(s) {CliFormat.Bytes(x.Bytes)}");
            if (list.Count == 0) Console.WriteLine("The index is empty (run 'proxybackup catalog rebuild' to fill it from the repository).");
            return 0;
        });
        cmd.Subcommands.Add(rebuild);
        cmd.Subcommands.Add(points);
        return cmd;
    }
}
