using System.Collections.ObjectModel;
using ProxyBackup.Engine;
using ProxyBackup.FileRestore;
using Terminal.Gui.App;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// The console's file browser (f): the selected VM's latest restore point opened as `files` opens it
/// (docs/operations.md, "File-level restore"), its volumes and directories walked with Alt+O (open)
/// and Alt+U (up), the selected entry copied into the directory typed below with Alt+G. Closing it
/// takes the session down.
/// </summary>
internal sealed class ConsoleFiles(IApplication app, AppConfig config, AppSecrets secrets, string runDirectory)
{
    private const int Close = 0, Open = 1, Up = 2, Get = 3;

    /// <summary>Runs the browser; returns what the dashboard's bottom line should say.</summary>
    public string Run(StatusCommand.ProtectedVm vm, CancellationToken ct)
    {
        RestorePointFiles files;
        ProxyBackup.Repository.RestorePoint point;
        try
        {
            var repository = config.Repository.Open(secrets);
            if (repository.Latest(config.OpenNebula.Sources.Of(vm.Id)) is not { } latest) return $"VM {vm.Id} ({vm.Name}) has no restore point yet.";
            point = latest;
            files = RestorePointFiles.OpenAsync(repository, point, null, runDirectory, ct).GetAwaiter().GetResult();
        }
        catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException)
        {
            return $"The files cannot be read: {e.Message}";
        }
        using (files)
        {
            var path = "";
            var list = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = 14 };
            var target = new TextField { X = 16, Y = 16, Width = Dim.Fill(), Text = Path.Combine(Environment.GetEnvironmentVariable("HOME") is { Length: > 0 } home ? home : "/root", "restored") };
            var said = new Label { X = 0, Y = 17, Width = Dim.Fill(), Text = "Alt+O opens a volume or directory, Alt+U goes up, Alt+G copies the selected entry into the directory above." };
            var where = new Label { X = 0, Y = 0, Width = Dim.Fill(), Text = "" };
            using var dialog = new Dialog { Title = $"Files of VM {vm.Id} ({vm.Name}), restore point {point.Id}", Width = Dim.Percent(90), Height = 24 };
            dialog.Add(where, list, new Label { X = 0, Y = 16, Text = "Copy into:" }, target, said);
            foreach (var text in new[] { "Close", "_Open", "_Up" }) dialog.AddButton(new Button { Text = text });
            dialog.AddButton(new Button { Text = "_Get", IsDefault = true });
            while (true)
            {
                IReadOnlyList<FileEntry> entries;
                try { entries = files.List(path); }
                catch (FileRestoreException e) { said.Text = e.Message; path = ""; entries = files.List(path); }
                where.Text = path.Length == 0 ? "Volumes (disk partitions, whole disks, LVM volumes):" : $"/{path}";
                list.Source = new ListWrapper<string>(new ObservableCollection<string>(entries.Select(e =>
                    $"{e.Kind} {CliFormat.Bytes(e.Size),10}  {(e.Modified == DateTimeOffset.MinValue ? "" : $"{e.Modified:yyyy-MM-dd HH:mm}Z  ")}{e.Name}{(e.LinkTarget is null ? "" : " -> " + e.LinkTarget)}")));
                if (entries.Count > 0) list.SelectedItem = 0;
                // The keys go to the list again after a button was pressed.
                list.SetFocus();
                app.Run(dialog);
                var selected = entries.Count > 0 ? entries[Math.Clamp(list.SelectedItem ?? 0, 0, entries.Count - 1)] : null;
                var selectedPath = selected is null ? null : path.Length == 0 ? selected.Name : $"{path}/{selected.Name}";
                switch (dialog.Result)
                {
                    case Open when selected is { Kind: 'd' or 'l' }:
                        path = selectedPath!;
                        continue;
                    case Open:
                        said.Text = "That is a file: Alt+G copies it.";
                        continue;
                    case Up:
                        path = path.Contains('/', StringComparison.Ordinal) ? path[..path.LastIndexOf('/')] : "";
                        continue;
                    case Get when selectedPath is not null && path.Length > 0:
                        try
                        {
                            var copied = files.Get(selectedPath, target.Text.Trim());
                            said.Text = $"Copied {selectedPath}: {copied.Files} file(s), {copied.Directories} directorie(s), {CliFormat.Bytes(copied.Bytes)} into {target.Text.Trim()}"
                                + (copied.Skipped.Count > 0 ? $"; skipped: {copied.Skipped[0]}" : ".");
                        }
                        catch (Exception e) when (e is FileRestoreException or IOException or UnauthorizedAccessException) { said.Text = $"Not copied: {e.Message}"; }
                        continue;
                    case Get:
                        said.Text = "Open a volume first: Alt+G copies what is in one.";
                        continue;
                    default:
                        return "";
                }
            }
        }
    }
}
