using System.CommandLine;
using Command = System.CommandLine.Command;
using System.Text.Json.Nodes;
using Terminal.Gui.App;
using Terminal.Gui.Input;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup console`: the full-screen dashboard an operator keeps open on the appliance
/// (Terminal.Gui): the appliance's state, every protected VM with its last backup and why it failed,
/// the running jobs with live progress, and the problems `status` names (docs/operations.md,
/// "The console"). It reads what `status` reads; the only thing it does is hand a backup to the daemon.
/// </summary>
internal static class ConsoleCommand
{
    /// <summary>Running jobs come from the daemon's socket this often; the cloud and the catalog every fifth time.</summary>
    private static readonly TimeSpan JobsEvery = TimeSpan.FromSeconds(2);
    private const int FullEvery = 5;

    public static Command Build()
    {
        var c = new Command("console", "Full-screen dashboard: protected VMs with their last backup, running jobs live, repository, daemon; b backs the selected VM up now, Esc leaves.") { DaemonCommand.ConfigFile };
        c.SetAction(async (p, ct) =>
        {
            var (config, secrets) = StatusCommand.Load(p.GetValue(DaemonCommand.ConfigFile)!);
            await new Dashboard(config, secrets).RunAsync(ct).ConfigureAwait(false);
            return 0;
        });
        return c;
    }

    private sealed class Dashboard(AppConfig config, AppSecrets secrets)
    {
        private readonly Label _header = new() { X = 0, Y = 0, Width = Dim.Fill(), Height = 5 };
        private readonly TableView _vms = new() { X = 0, Y = 6, Width = Dim.Fill(), Height = Dim.Percent(50), FullRowSelect = true };
        private readonly Label _jobs = new() { X = 0, Width = Dim.Fill(), Height = 6 };
        private readonly Label _problems = new() { X = 0, Width = Dim.Fill(), Height = Dim.Fill(1) };
        private readonly Label _said = new() { X = 0, Y = Pos.AnchorEnd(1), Width = Dim.Fill(), Height = 1 };
        private IReadOnlyList<StatusCommand.ProtectedVm> _shown = [];
        private int _refreshes;
        private bool _busy;

        public async Task RunAsync(CancellationToken ct)
        {
            var first = await StatusCommand.GatherAsync(config, secrets, ct).ConfigureAwait(false);
            using var app = Application.Create().Init();
            _jobs.Y = Pos.Bottom(_vms) + 1;
            _problems.Y = Pos.Bottom(_jobs);
            using var window = new Window { Title = $"ProxyBackup {CliFormat.Version} — {Environment.MachineName}   b: back up the selected VM now   Esc: leave" };
            window.Add(_header, new Label { X = 0, Y = 5, Text = "Protected VMs" }, _vms, _jobs, _problems, _said);
            Show(first);
            window.KeyDown += (_, key) =>
            {
                if (key == Key.Esc) { app.RequestStop(); key.Handled = true; }
            };
            // On the table itself: letters would otherwise move its selection to a row starting with them.
            _vms.KeyDown += (_, key) =>
            {
                if (key == Key.B) { BackUpSelected(app); key.Handled = true; }
            };
            app.AddTimeout(JobsEvery, () => { Refresh(app, ct); return true; });
            using (ct.Register(() => app.Invoke(() => app.RequestStop()))) app.Run(window);
        }

        /// <summary>Gathers off the UI thread, one refresh at a time, and shows the result on it.</summary>
        private void Refresh(IApplication app, CancellationToken ct)
        {
            if (_busy) return;
            _busy = true;
            var full = ++_refreshes % FullEvery == 0;
            _ = Task.Run(async () =>
            {
                try
                {
                    if (full)
                    {
                        var status = await StatusCommand.GatherAsync(config, secrets, ct).ConfigureAwait(false);
                        app.Invoke(() => Show(status));
                    }
                    else
                    {
                        var answer = await DaemonApi.AskAsync(config.Daemon.Socket, new { op = "status" }, ct).ConfigureAwait(false);
                        app.Invoke(() => ShowJobs(answer?["running"]?.AsArray() ?? [], answer?["waiting"]?.AsArray().Count ?? 0, answer is not null));
                    }
                }
                catch (Exception e) when (e is not OperationCanceledException)
                {
                    app.Invoke(() => _said.Text = $"Refresh failed: {e.Message}");
                }
                finally
                {
                    _busy = false;
                }
            }, ct);
        }

        private void Show(StatusCommand.Status s)
        {
            _header.Text = string.Join('\n', StatusCommand.Header(s));
            var selected = _vms.Value?.SelectedCell.Y ?? 0;
            _shown = [.. s.ProtectedVms.OrderBy(v => v.Id)];
            _vms.Table = new EnumerableTableSource<StatusCommand.ProtectedVm>(_shown, new()
            {
                ["ID"] = v => v.Id,
                ["NAME"] = v => v.Name,
                ["POLICIES"] = v => string.Join(",", v.Policies),
                ["LAST BACKUP"] = v => v.LastBackup is { } j ? $"{j.Started:yyyy-MM-dd HH:mm}Z" : "never",
                ["RESULT"] = v => v.LastBackup?.State ?? "",
                ["REASON"] = v => v.LastBackup?.Error ?? "",
            });
            if (_shown.Count > 0) _vms.Value = new TableSelection(new System.Drawing.Point(0, Math.Min(selected, _shown.Count - 1)), []);
            ShowJobs(s.Running, s.Waiting.Count, s.Daemon.Running);
            _problems.Text = s.Problems.Count == 0 ? "All well." : $"{s.Problems.Count} problem(s):\n" + string.Join('\n', s.Problems.Select(p => $"  - {p}"));
        }

        private void ShowJobs(JsonArray running, int waiting, bool daemonUp) =>
            _jobs.Text = !daemonUp
                ? "Jobs: the daemon is not running (systemctl start proxybackup)"
                : $"Jobs: {running.Count} running, {waiting} waiting\n" + string.Join('\n', running.Select(j => $"  {CliFormat.RunningJob(j!)}"));

        private void BackUpSelected(IApplication app)
        {
            if (_shown.Count == 0 || _vms.Value?.SelectedCell.Y is not { } row || row >= _shown.Count) return;
            var vm = _shown[row];
            if (MessageBox.Query(app, "Back up now", $"Back up VM {vm.Id} ({vm.Name}) now?", "Back up", "Cancel") != 0) return;
            _ = Task.Run(async () =>
            {
                try
                {
                    var answer = await DaemonApi.AskAsync(config.Daemon.Socket, new { op = "backup", vm = vm.Id, full = false }, CancellationToken.None).ConfigureAwait(false);
                    app.Invoke(() => _said.Text = answer is null
                        ? "The daemon is not running: start it (systemctl start proxybackup) or run 'proxybackup vm backup' in a shell."
                        : (bool?)answer["ok"] != true ? $"Not started: {(string?)answer["error"]}"
                        : (bool?)answer["queued"] == true ? $"Backup of VM {vm.Id} ({vm.Name}) handed to the daemon." : $"VM {vm.Id} ({vm.Name}) is already queued or running.");
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or System.Text.Json.JsonException)
                {
                    app.Invoke(() => _said.Text = $"Not started: {e.Message}");
                }
            });
        }
    }
}
