using System.Collections.ObjectModel;
using System.CommandLine;
using System.Diagnostics;
using System.Text.Json.Nodes;
using ProxyBackup.Engine;
using Command = System.CommandLine.Command;
using Terminal.Gui.App;
using Terminal.Gui.Input;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// `proxybackup console`: the full-screen dashboard an operator keeps open on the appliance
/// (Terminal.Gui): the appliance's state, every protected VM with its last backup and why it failed,
/// the running jobs with live progress, and the problems `status` names (docs/operations.md,
/// "The console"). It reads what `status` reads; what it does (a backup handed to the daemon, a
/// restore run as `proxybackup vm restore`) it does after a summary the operator confirms.
/// </summary>
internal static class ConsoleCommand
{
    /// <summary>Running jobs come from the daemon's socket this often; the cloud and the catalog every fifth time.</summary>
    private static readonly TimeSpan JobsEvery = TimeSpan.FromSeconds(2);
    private const int FullEvery = 5;

    public static Command Build()
    {
        var fstab = new Option<string>("--fstab") { Description = "The fstab the storage screen records the repository's mount in.", DefaultValueFactory = _ => "/etc/fstab" };
        var c = new Command("console", "Full-screen dashboard: protected VMs with their last backup, running jobs live, repository, daemon; b backs the selected VM up now, r restores it, p policies, s storage, Esc leaves.") { DaemonCommand.ConfigFile, fstab };
        c.SetAction(async (p, ct) =>
        {
            var configPath = p.GetValue(DaemonCommand.ConfigFile)!;
            var (config, secrets) = StatusCommand.Load(configPath);
            await new Dashboard(config, secrets, configPath, p.GetValue(fstab)!).RunAsync(ct).ConfigureAwait(false);
            return 0;
        });
        return c;
    }

    private sealed class Dashboard(AppConfig config, AppSecrets secrets, string configPath, string fstabPath)
    {
        private readonly Label _header = new() { X = 0, Y = 0, Width = Dim.Fill(), Height = 5 };
        private readonly TableView _vms = new() { X = 0, Y = 6, Width = Dim.Fill(), Height = Dim.Percent(50), FullRowSelect = true };
        private readonly Label _jobs = new() { X = 0, Width = Dim.Fill(), Height = 6 };
        private readonly Label _problems = new() { X = 0, Width = Dim.Fill(), Height = Dim.Fill(1) };
        private readonly Label _said = new() { X = 0, Y = Pos.AnchorEnd(1), Width = Dim.Fill(), Height = 1 };
        private IReadOnlyList<StatusCommand.ProtectedVm> _shown = [];
        private JsonArray _daemonJobs = [];
        private int _daemonWaiting;
        private bool _daemonUp;

        /// <summary>The job this console runs itself (a restore, a verify; one at a time), and its latest progress line.</summary>
        private string? _restore;
        private int _refreshes;
        private bool _busy;

        public async Task RunAsync(CancellationToken ct)
        {
            var first = await StatusCommand.GatherAsync(config, secrets, ct).ConfigureAwait(false);
            using var app = Application.Create().Init();
            _jobs.Y = Pos.Bottom(_vms) + 1;
            _problems.Y = Pos.Bottom(_jobs);
            using var window = new Window { Title = $"ProxyBackup {CliFormat.Version} — {Environment.MachineName}   b: back up the selected VM now   r: restore it   p: policies   s: storage   v: repository   n: snapshots   c: connection   Esc: leave" };
            window.Add(_header, new Label { X = 0, Y = 5, Text = "Protected VMs" }, _vms, _jobs, _problems, _said);
            Show(first);
            // Taken at the application level while the dashboard is on top: the table's type-to-search would swallow letters.
            app.Keyboard.KeyDown += (_, key) =>
            {
                if (!ReferenceEquals(app.TopRunnableView, window)) return;
                Action? act = key == Key.Esc ? () => app.RequestStop() : key == Key.B ? () => BackUpSelected(app) : key == Key.R ? () => RestoreSelected(app)
                    : key == Key.P ? () => EditPolicies(app, ct) : key == Key.S ? () => SetUpStorage(app) : key == Key.V ? () => ShowRepository(app) : key == Key.N ? () => ShowSnapshots(app, ct) : key == Key.C ? () => EditConnection(app, ct) : null;
                if (act is null) return;
                key.Handled = true;
                act();
            };
            app.AddTimeout(JobsEvery, () => { Refresh(app, ct); return true; });
            // Said from the main loop's first turn: from then on keys are read (a key typed while the
            // screen is drawn but the loop not yet running may be lost).
            app.AddTimeout(TimeSpan.Zero, () => { _said.Text = "Ready: b back up, r restore, p policies, s storage, v repository, n snapshots, c connection, Esc leave."; return false; });
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
                        app.Invoke(() => { (_daemonJobs, _daemonWaiting, _daemonUp) = (answer?["running"]?.AsArray() ?? [], answer?["waiting"]?.AsArray().Count ?? 0, answer is not null); ShowJobs(); });
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
            (_daemonJobs, _daemonWaiting, _daemonUp) = (s.Running, s.Waiting.Count, s.Daemon.Running);
            ShowJobs();
            _problems.Text = s.Problems.Count == 0 ? "All well." : $"{s.Problems.Count} problem(s):\n" + string.Join('\n', s.Problems.Select(p => $"  - {p}"));
        }

        private void ShowJobs() =>
            _jobs.Text = (!_daemonUp
                ? "Jobs: the daemon is not running (systemctl start proxybackup)"
                : $"Jobs: {_daemonJobs.Count} running, {_daemonWaiting} waiting\n" + string.Join('\n', _daemonJobs.Select(j => $"  {CliFormat.RunningJob(j!)}")))
                + (_restore is null ? "" : $"\n  {_restore}");

        /// <summary>
        /// v: the repository: what it holds (restore points, stored bytes, dedup and compression), what each
        /// protected VM's retention would forget at its next backup, and a verify run beside the console.
        /// </summary>
        private void ShowRepository(IApplication app)
        {
            var lines = new List<string>();
            try
            {
                var repository = config.Repository.Open(secrets.PassphraseKey());
                var stats = repository.Stats();
                lines.Add($"{repository.Root}: {stats.RestorePoints} restore point(s) of {stats.Sources.Count} VM(s), logical {CliFormat.Bytes(stats.LogicalBytes)}, stored {CliFormat.Bytes(stats.StoredBytes)} in {stats.UniqueChunks} chunks");
                lines.Add($"dedup {stats.DedupRatio:0.00}x, compression {stats.CompressionRatio:0.00}x; {(repository.Config.Encrypted ? "encrypted" : "not encrypted")}");
                lines.Add("");
                lines.Add("Retention at each VM's next backup:");
                var policies = new ProxyBackup.Catalog.SqliteCatalog(config.Catalog.Path).Policies().ToDictionary(p => p.Name, StringComparer.Ordinal);
                foreach (var vm in _shown)
                {
                    var policy = vm.Policies.Select(name => policies.GetValueOrDefault(name)).FirstOrDefault(p => p is { Retention.IsEmpty: false });
                    if (policy is null) { lines.Add($"  VM {vm.Id} ({vm.Name}): no retention, every restore point is kept"); continue; }
                    var plan = repository.ApplyRetention(policy.Retention, BackupJob.SourceOf(vm.Id), dryRun: true);
                    lines.Add($"  VM {vm.Id} ({vm.Name}), policy {policy.Name}: keeps {plan.Count(d => d.Keep)}, would forget {plan.Count(d => !d.Keep)}");
                }
            }
            catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException)
            {
                lines.Add($"The repository cannot be read: {e.Message}");
            }
            using var dialog = new Dialog { Title = "Repository", Width = Dim.Percent(90), Height = Math.Min(lines.Count, 20) + 6 };
            dialog.Add(new Label { X = 0, Y = 0, Width = Dim.Fill(), Height = Math.Min(lines.Count, 20), Text = string.Join('\n', lines) });
            dialog.AddButton(new Button { Text = "Verify: every chunk exists" });
            dialog.AddButton(new Button { Text = "Verify: read all data" });
            dialog.AddButton(new Button { Text = "Close", IsDefault = true });
            app.Run(dialog);
            // Not Dialog.Canceled: it counts every button but the last (Close) as a cancel.
            if (dialog.Result is not (0 or 1)) return;
            if (Busy()) return;
            StartChild(app, "verify", dialog.Result == 1 ? ["repository", "verify", "--read-data", "--config", configPath] : ["repository", "verify", "--config", configPath]);
        }

        /// <summary>
        /// s: the repository's own disk or NFS share (docs/operations.md, "Repository storage"): a dialog
        /// takes the disk (or a device path, or an export), a summary says what will happen (Cancel is its
        /// default), then it is done and its mount point recorded in the saved configuration at once.
        /// </summary>
        private void SetUpStorage(IApplication app)
        {
            const string other = "Another device (type its path below)", nfs = "An NFS export (type host:/path below)";
            var disks = StorageCommand.BlockDisks.Candidates();
            var choices = disks.Select(d => $"{d.Path}  {CliFormat.Bytes(d.Size)}  {d.Content}").Concat([other, nfs]).ToList();
            var list = new ListView { X = 0, Y = 2, Width = Dim.Fill(), Height = Math.Min(choices.Count, 6), Source = new ListWrapper<string>(new ObservableCollection<string>(choices)), SelectedItem = 0 };
            var typed = new TextField { X = 0, Y = Pos.Bottom(list) + 1, Width = Dim.Fill() };
            using var dialog = new Dialog { Title = "Repository storage", Width = Dim.Percent(80), Height = Math.Min(choices.Count, 6) + 9 };
            dialog.Add(new Label { X = 0, Y = 0, Width = Dim.Fill(), Text = StorageCommand.State(config) }, list, typed);
            dialog.AddButton(new Button { Text = "Cancel" });
            dialog.AddButton(new Button { Text = "Next", IsDefault = true });
            app.Run(dialog);
            if (dialog.Canceled || dialog.Result != 1) return;
            var target = Path.TrimEndingDirectorySeparator(Path.GetFullPath(config.Repository.Path));
            var choice = choices[Math.Clamp(list.SelectedItem ?? 0, 0, choices.Count - 1)];
            var text = typed.Text.Trim();
            var setup = new StorageCommand.StorageSetup(target, fstabPath);
            Func<string> work;
            string summary;
            try
            {
                if (choice == nfs)
                {
                    summary = $"Mount {text} at {target} and record it in {fstabPath}?";
                    work = () => setup.Nfs(text);
                }
                else
                {
                    var device = choice == other ? text : disks[choices.IndexOf(choice)].Path;
                    var plan = StorageCommand.Plan(device, target, fstabPath);
                    summary = plan.Summary;
                    work = () => setup.Disk(device, formatIfBlank: plan.Format);
                }
            }
            catch (CliException e) { _said.Text = e.Message; return; }
            if (MessageBox.Query(app, "Repository storage", summary, "Go ahead", "Cancel") != 0) return;
            _said.Text = "Setting up the repository's storage...";
            _ = Task.Run(() =>
            {
                string said;
                try
                {
                    said = work();
                    StorageCommand.RecordMountPoint(configPath, target);
                    config.Repository.MountPoint = target;
                    said += " " + StorageCommand.RepositoryHint(config, configPath);
                }
                catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException) { said = e.Message; }
                app.Invoke(() => _said.Text = said);
            });
        }

        /// <summary>The VM the table's cursor is on, or null when the table is empty.</summary>
        private StatusCommand.ProtectedVm? SelectedVm() =>
            _vms.Value?.SelectedCell.Y is { } row && row >= 0 && row < _shown.Count ? _shown[row] : null;

        /// <summary>The console runs one job of its own at a time; says so when one runs.</summary>
        private bool Busy()
        {
            if (_restore is not null) _said.Text = $"The console runs one job at a time: {_restore}";
            return _restore is not null;
        }

        /// <summary>Asks the cloud, for at most 10 s; null when it does not answer (the screens then say so).</summary>
        private T? FromCloud<T>(Func<ProxyBackup.OpenNebula.OneClient, CancellationToken, Task<T>> ask, CancellationToken ct) where T : class
        {
            try
            {
                using var client = new ProxyBackup.OpenNebula.OneClient(config.ClientOptions(secrets));
                using var wait = CancellationTokenSource.CreateLinkedTokenSource(ct);
                wait.CancelAfter(TimeSpan.FromSeconds(10));
                return ask(client, wait.Token).GetAwaiter().GetResult();
            }
            catch (Exception e) when (e is ProxyBackup.OpenNebula.OneException or HttpRequestException or IOException or OperationCanceledException or ProxyBackup.Contracts.UserFacingException)
            {
                _said.Text = $"OpenNebula did not answer: {e.Message}";
                return null;
            }
        }

        /// <summary>
        /// n: the disk snapshots of the selected VM (ProxyBackup's own are removed after each backup; what
        /// is listed was left by someone, or kept by OpenNebula); one is deleted after a summary.
        /// </summary>
        private void ShowSnapshots(IApplication app, CancellationToken ct)
        {
            if (SelectedVm() is not { } vm) return;
            if (FromCloud((c, t) => c.VmInfoAsync(vm.Id, t), ct) is not { } info) return;
            var snapshots = info.Snapshots.SelectMany(set => set.Snapshots.Select(snap => (set.DiskId, Snapshot: snap))).ToList();
            var lines = snapshots.Select(x => $"disk {x.DiskId}  snapshot {x.Snapshot.Id,3}  {DateTimeOffset.FromUnixTimeSeconds(x.Snapshot.Date):yyyy-MM-dd HH:mm}Z  {(x.Snapshot.Active ? "active" : "      ")}  {x.Snapshot.SizeMb} MB  {x.Snapshot.Name}").ToList();
            var list = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = Math.Clamp(lines.Count, 1, 10), Source = new ListWrapper<string>(new ObservableCollection<string>(lines)), SelectedItem = lines.Count > 0 ? 0 : null };
            using var dialog = new Dialog { Title = $"Disk snapshots of VM {vm.Id} ({vm.Name})", Width = Dim.Percent(80), Height = Math.Clamp(lines.Count, 1, 10) + 7 };
            dialog.Add(new Label { X = 0, Y = 0, Text = lines.Count == 0 ? "No disk snapshot." : "Delete one with the first button:" }, list);
            dialog.AddButton(new Button { Text = "Delete the selected snapshot" });
            dialog.AddButton(new Button { Text = "Close", IsDefault = true });
            app.Run(dialog);
            // Not Dialog.Canceled: it counts every button but the last (Close) as a cancel.
            if (dialog.Result != 0 || snapshots.Count == 0) return;
            var (disk, snapshot) = snapshots[Math.Clamp(list.SelectedItem ?? 0, 0, snapshots.Count - 1)];
            if (MessageBox.Query(app, "Delete snapshot", $"Delete snapshot {snapshot.Id} ({snapshot.Name}) of disk {disk} of VM {vm.Id} ({vm.Name})?\nIts data is gone afterwards.", "Delete", "Cancel") != 0) return;
            if (Busy()) return;
            StartChild(app, $"snapshot delete of VM {vm.Id}", ["snapshot", "delete", vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture),
                "--disk", disk.ToString(System.Globalization.CultureInfo.InvariantCulture), "--snapshot", snapshot.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--config", configPath]);
        }

        /// <summary>c: the connection screen; what it saves is what the next refresh uses.</summary>
        private void EditConnection(IApplication app, CancellationToken ct)
        {
            var said = new ConsoleConnection(app, config, secrets, configPath).Run(ct);
            if (said.Length > 0) _said.Text = said;
            _refreshes = FullEvery - 1;
        }

        /// <summary>p: the policies screen, with the cloud's VMs for its preview (none when the cloud does not answer within 10 s).</summary>
        private void EditPolicies(IApplication app, CancellationToken ct)
        {
            var vms = FromCloud<IReadOnlyList<ProxyBackup.OpenNebula.VirtualMachine>>((c, t) => c.VmPoolAsync(ct: t), ct);
            var said = new ConsolePolicies(app, new ProxyBackup.Catalog.SqliteCatalog(config.Catalog.Path), vms, config.OpenNebula.ProxyVmId ?? ProxyIdentity.FromContext()).Run();
            if (said.Length > 0) _said.Text = said;
            _refreshes = FullEvery - 1;   // the next refresh reads the catalog again
        }

        /// <summary>
        /// r: the restore of the selected VM as a new VM. A dialog takes the restore point, the new VM's
        /// name and what becomes of its NICs; a summary says what will happen (Cancel is its default);
        /// then `proxybackup vm restore` runs beside the console, its progress in the jobs panel.
        /// </summary>
        private void RestoreSelected(IApplication app)
        {
            if (Busy()) return;
            if (SelectedVm() is not { } vm) return;
            IReadOnlyList<ProxyBackup.Repository.RestorePoint> points;
            try { points = [.. config.Repository.Open(secrets.PassphraseKey()).ListRestorePoints(BackupJob.SourceOf(vm.Id)).OrderByDescending(pt => pt.Time)]; }
            catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException) { _said.Text = $"The repository cannot be read: {e.Message}"; return; }
            if (points.Count == 0) { _said.Text = $"VM {vm.Id} ({vm.Name}) has no restore point yet."; return; }

            string Describe(ProxyBackup.Repository.RestorePoint pt) =>
                $"{pt.Id}  {pt.Time:yyyy-MM-dd HH:mm}Z  {pt.Tags.GetValueOrDefault("kind", "")}  {pt.Disks.Count} disk(s), {CliFormat.Bytes(pt.Disks.Sum(d => d.Size))}";
            (string Text, NicMode Mode)[] nicChoices = [("Same networks, new addresses", NicMode.NoIp), ("Same networks and addresses (the original VM must be gone)", NicMode.Keep), ("No NICs", NicMode.NoNic)];
            var pointList = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = Math.Min(points.Count, 6), Source = new ListWrapper<string>(new ObservableCollection<string>(points.Select(Describe))), SelectedItem = 0 };
            var nicList = new ListView { X = 0, Y = Pos.Bottom(pointList) + 4, Width = Dim.Fill(), Height = 3, Source = new ListWrapper<string>(new ObservableCollection<string>(nicChoices.Select(n => n.Text))), SelectedItem = 0 };
            var name = new TextField { X = 0, Y = Pos.Bottom(pointList) + 2, Width = 50, Text = $"{vm.Name}-restored" };
            // The same defaults as 'vm restore': images in datastore 1, the system datastore the scheduler's choice.
            var imageDs = new TextField { X = 42, Y = Pos.Bottom(nicList) + 1, Width = 10, Text = "1" };
            var systemDs = new TextField { X = 42, Y = Pos.Bottom(nicList) + 2, Width = 10, Text = "" };
            using var dialog = new Dialog { Title = $"Restore VM {vm.Id} ({vm.Name}) as a new VM", Width = Dim.Percent(80), Height = Math.Min(points.Count, 6) + 16 };
            dialog.Add(new Label { X = 0, Y = 0, Text = "Restore point:" }, pointList,
                new Label { X = 0, Y = Pos.Bottom(pointList) + 1, Text = "Name of the new VM:" }, name,
                new Label { X = 0, Y = Pos.Bottom(pointList) + 3, Text = "NICs:" }, nicList,
                new Label { X = 0, Y = Pos.Bottom(nicList) + 1, Text = "Image datastore ID for the disks:" }, imageDs,
                new Label { X = 0, Y = Pos.Bottom(nicList) + 2, Text = "System datastore ID (empty: any):" }, systemDs);
            dialog.AddButton(new Button { Text = "Cancel" });
            dialog.AddButton(new Button { Text = "Next", IsDefault = true });
            app.Run(dialog);
            if (dialog.Canceled || dialog.Result != 1) return;
            var point = points[Math.Clamp(pointList.SelectedItem ?? 0, 0, points.Count - 1)];
            var nic = nicChoices[Math.Clamp(nicList.SelectedItem ?? 0, 0, nicChoices.Length - 1)];
            var newName = name.Text.Trim();
            if (newName.Length == 0) { _said.Text = "Not restored: the new VM needs a name."; return; }
            static bool Id(string text) => int.TryParse(text.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _);
            if (!Id(imageDs.Text) || (systemDs.Text.Trim().Length > 0 && !Id(systemDs.Text))) { _said.Text = "Not restored: datastores are given by their numeric ID."; return; }
            var system = systemDs.Text.Trim();
            var summary = $"Restore VM {vm.Id} ({vm.Name}) from {Describe(point)}\nas a new VM named '{newName}', NICs: {nic.Text.ToLowerInvariant()};\n" +
                $"its disks as new images in datastore {imageDs.Text.Trim()}, the VM on {(system.Length == 0 ? "the system datastore the scheduler chooses" : $"system datastore {system}")}.\nThe original VM is not touched.";
            if (MessageBox.Query(app, "Restore", summary, "Restore", "Cancel") != 0) return;
            string[] args = ["vm", "restore", vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--point", point.Id, "--name", newName, "--nics", nic.Mode.ToString(), "--image-ds", imageDs.Text.Trim(), "--config", configPath];
            StartChild(app, $"restore of VM {vm.Id} ({vm.Name})", system.Length == 0 ? args : [.. args, "--system-ds", system]);
        }

        /// <summary>Runs a `proxybackup` verb beside the console: its progress lines (stderr) go to the jobs panel, its result to the bottom line.</summary>
        private void StartChild(IApplication app, string label, string[] args)
        {
            var psi = new ProcessStartInfo(Environment.ProcessPath!) { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
            // Run as 'dotnet proxybackup.dll' (a developer's build), the program is the dll.
            if (Path.GetFileNameWithoutExtension(Environment.ProcessPath) == "dotnet") psi.ArgumentList.Add(typeof(ConsoleCommand).Assembly.Location);
            foreach (var a in args) psi.ArgumentList.Add(a);
            _restore = $"{label}: starting";
            ShowJobs();
            _ = Task.Run(async () =>
            {
                string result;
                try
                {
                    using var process = Process.Start(psi)!;
                    var output = process.StandardOutput.ReadToEndAsync();
                    string? line, last = null;
                    while ((line = await process.StandardError.ReadLineAsync().ConfigureAwait(false)) is not null)
                    {
                        last = line;
                        var progress = line;
                        app.Invoke(() => { _restore = $"{label}: {progress}"; ShowJobs(); });
                    }
                    await process.WaitForExitAsync().ConfigureAwait(false);
                    var lines = (await output.ConfigureAwait(false)).Split('\n', StringSplitOptions.RemoveEmptyEntries);
                    result = process.ExitCode == 0 ? lines.LastOrDefault() ?? $"The {label} ended." : $"The {label} failed (exit {process.ExitCode}): {lines.LastOrDefault() ?? last}";
                }
                catch (Exception e) when (e is IOException or System.ComponentModel.Win32Exception)
                {
                    result = $"The {label} could not start: {e.Message}";
                }
                app.Invoke(() => { _restore = null; _said.Text = result; ShowJobs(); });
            });
        }

        private void BackUpSelected(IApplication app)
        {
            if (SelectedVm() is not { } vm) return;
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
