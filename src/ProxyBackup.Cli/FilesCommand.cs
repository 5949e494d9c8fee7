using System.CommandLine;
using ProxyBackup.Engine;
using ProxyBackup.FileRestore;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup files ls|get|clean`: a restore point's files without restoring its disks
/// (docs/operations.md, "File-level restore"). Each call opens a session, does its work and takes
/// the session down; one left by a killed call is taken down by the next, or by `files clean`.
/// </summary>
internal static class FilesCommand
{
    private static readonly Option<string> RunDirectory = new("--run-dir")
    {
        Description = "Where sessions mount the point's file systems (one directory each, mode 0700).",
        DefaultValueFactory = _ => "/run/proxybackup/files", Recursive = true,
    };

    public static Command Build()
    {
        var files = new Command("files", "A restore point's files, read without restoring its disks: list them, copy them out.");
        foreach (var o in EngineHost.Options) files.Options.Add(o);
        files.Options.Add(RunDirectory);
        var point = new Option<string>("--point") { DefaultValueFactory = _ => "latest", Description = "Restore point id, or 'latest'." };
        var disk = new Option<string[]>("--disk") { Description = "Only this DISK_ID (repeatable); default: every disk of the point." };
        var path = new Argument<string>("path") { Description = "VOLUME/path/in/it ('' or / lists the volumes: disk0p1, disk0, vg-lv, ...).", DefaultValueFactory = _ => "" };
        var to = new Option<string>("--to") { Description = "The directory files are copied into (made if missing; nothing in it is overwritten).", Required = true };

        var ls = new Command("ls", "List the volumes of a VM's restore point, or a directory in one.") { CloudCommands.Vm, path, point, disk, CloudCommands.Json };
        ls.SetAction(async (p, ct) =>
        {
            using var session = await OpenAsync(p, point, disk, ct).ConfigureAwait(false);
            var where = p.GetValue(path)!.Trim('/');
            if (where.Length == 0)
            {
                if (p.GetValue(CloudCommands.Json)) { CliFormat.PrintJson(session.Volumes); return 0; }
                foreach (var v in session.Volumes)
                    Console.WriteLine($"{v.Name,-24} {v.FileSystem ?? "-",-12} {CliFormat.Bytes(v.Size),10}  {(v.MountPath is null ? v.Note : "readable")}");
                return 0;
            }
            var entries = session.List(where);
            if (p.GetValue(CloudCommands.Json)) { CliFormat.PrintJson(entries); return 0; }
            foreach (var e in entries)
                Console.WriteLine($"{e.Kind} {Mode(e.Mode)} {CliFormat.Bytes(e.Size),10}  {e.Modified:yyyy-MM-dd HH:mm}Z  {e.Name}{(e.LinkTarget is null ? "" : " -> " + e.LinkTarget)}");
            return 0;
        });

        var get = new Command("get", "Copy a file or a directory out of a VM's restore point.") { CloudCommands.Vm, path, point, disk, to };
        get.SetAction(async (p, ct) =>
        {
            using var session = await OpenAsync(p, point, disk, ct).ConfigureAwait(false);
            var copied = session.Get(p.GetValue(path)!.Trim('/'), p.GetValue(to)!);
            Console.WriteLine($"Copied {copied.Files} file(s), {copied.Directories} directorie(s), {copied.Links} link(s), {CliFormat.Bytes(copied.Bytes)} into {p.GetValue(to)}.");
            foreach (var s in copied.Skipped) Console.WriteLine($"  skipped: {s}");
            return 0;
        });

        var clean = new Command("clean", "Take down the sessions that a killed 'files' call left (mounts, loop devices).");
        clean.SetAction(p =>
        {
            var removed = RestorePointFiles.CleanStale(p.GetValue(RunDirectory)!);
            Console.WriteLine(removed.Count == 0 ? "No session was left." : $"Took down {removed.Count} session(s) left by a process that is gone.");
            return 0;
        });
        foreach (var c in new[] { ls, get, clean }) files.Subcommands.Add(c);
        return files;
    }

    private static async Task<RestorePointFiles> OpenAsync(ParseResult p, Option<string> point, Option<string[]> disk, CancellationToken ct)
    {
        var repo = RepositoryCommands.Open(p);
        using var client = EngineHost.Connect(p);
        var sources = EngineHost.SourcesOf(p);
        var id = await EngineHost.ResolveVmAsync(client, p.GetValue(CloudCommands.Vm)!, ct, (repo, sources)).ConfigureAwait(false);
        var source = sources.Of(id);
        var pt = p.GetValue(point) == "latest" ? repo.Latest(source) ?? throw new CliException($"VM {id} has no restore point.") : repo.LoadIndex(source, p.GetValue(point)!);
        return await RestorePointFiles.OpenAsync(repo, pt, p.GetValue(disk), p.GetValue(RunDirectory)!, ct).ConfigureAwait(false);
    }

    private static string Mode(UnixFileMode m)
    {
        Span<char> s = stackalloc char[9];
        var bits = (int)m;
        for (var i = 0; i < 9; i++) s[i] = (bits & (1 << (8 - i))) != 0 ? "rwxrwxrwx"[i] : '-';
        return new string(s);
    }
}
