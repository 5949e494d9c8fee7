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
        var c = new Command("console", "Full-screen dashboard: protected VMs with their last backup, running jobs live, repository, daemon; b backs the selected VM up now, r restores it, p policies, s storage, v repository, c connection, Esc leaves.") { DaemonCommand.ConfigFile, StorageCommand.Fstab };
        c.SetAction(async (p, ct) => await RunAsync(p.GetValue(DaemonCommand.ConfigFile)!, p.GetValue(StorageCommand.Fstab)!, ct).ConfigureAwait(false));
        return c;
    }

    /// <summary>
    /// The console on the configuration at configPath; without one (a new appliance) it starts on the
    /// defaults and OpenNebula's context, and the first screen saved writes the file.
    /// </summary>
    internal static async Task<int> RunAsync(string configPath, string fstabPath, CancellationToken ct)
    {
        string? welcome = null;
        AppConfig config;
        AppSecrets secrets;
        if (File.Exists(configPath)) (config, secrets) = StatusCommand.Load(configPath);
        else
        {
            (config, secrets) = (AppConfig.Defaults(configPath), new AppSecrets());
            welcome = $"No configuration at {configPath} yet: c sets the connection and the proxy VM, s the storage, v the repository; each screen's Save writes it.";
        }
        await new Dashboard(config, secrets, configPath, fstabPath).RunAsync(welcome, ct).ConfigureAwait(false);
        return 0;
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

        public async Task RunAsync(string? welcome, CancellationToken ct)
        {
            var first = await StatusCommand.GatherAsync(config, secrets, ct).ConfigureAwait(false);
            using var app = Application.Create().Init();
            _jobs.Y = Pos.Bottom(_vms) + 1;
            _problems.Y = Pos.Bottom(_jobs);
            using var window = new Window { Title = $"ProxyBackup {CliFormat.Version} — {Environment.MachineName}   b: back up the selected VM now   x: cancel its backup   r: restore it   f: its files   p: policies   s: storage   v: repository   n: snapshots   c: connection   Esc: leave" };
            window.Add(_header, new Label { X = 0, Y = 5, Text = "Protected VMs" }, _vms, _jobs, _problems, _said);
            Show(first);
            // Taken at the application level while the dashboard is on top: the table's type-to-search would swallow letters.
            app.Keyboard.KeyDown += (_, key) =>
            {
                if (!ReferenceEquals(app.TopRunnableView, window)) return;
                Action? act = key == Key.Esc ? () => app.RequestStop() : key == Key.B ? () => BackUpSelected(app) : key == Key.X ? () => CancelSelected(app) : key == Key.R ? () => RestoreSelected(app)
                    : key == Key.P ? () => EditPolicies(app, ct) : key == Key.S ? () => SetUpStorage(app) : key == Key.V ? () => ShowRepository(app) : key == Key.N ? () => ShowSnapshots(app, ct) : key == Key.F ? () => BrowseFiles(app, ct) : key == Key.C ? () => EditConnection(app, ct) : null;
                if (act is null) return;
                key.Handled = true;
                act();
            };
            app.AddTimeout(JobsEvery, () => { Refresh(app, ct); return true; });
            // Said from the main loop's first turn: from then on keys are read (a key typed while the
            // screen is drawn but the loop not yet running may be lost).
            app.AddTimeout(TimeSpan.Zero, () => { _said.Text = welcome ?? "Ready: b back up, x cancel, r restore, f files, p policies, s storage, v repository, n snapshots, c connection, Esc leave."; return false; });
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
                ["LAST DRILL"] = v => v.LastDrill is { } d ? StatusCommand.DrillSummary(d) : "never",
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

        /// <summary>v: the repository screen; a verify asked for there runs beside the console, its progress in the jobs panel.</summary>
        private void ShowRepository(IApplication app)
        {
            var (choice, said) = new ConsoleRepository(app, config, secrets, configPath).Run(_shown);
            if (said.Length > 0) _said.Text = said;
            _refreshes = FullEvery - 1;
            if (choice == ConsoleRepository.Choice.Nothing || Busy()) return;
            StartChild(app, "verify", choice == ConsoleRepository.Choice.VerifyData ? ["repository", "verify", "--read-data", "--config", configPath] : ["repository", "verify", "--config", configPath]);
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
        /// is listed was left by someone, or kept by OpenNebula): one is deleted, or a disk reverted to
        /// it, or a new one taken, each after a summary, run as `proxybackup snapshot` beside the console.
        /// </summary>
        private void ShowSnapshots(IApplication app, CancellationToken ct)
        {
            if (SelectedVm() is not { } vm) return;
            if (FromCloud((c, t) => c.VmInfoAsync(vm.Id, t), ct) is not { } info) return;
            var snapshots = info.Snapshots.SelectMany(set => set.Snapshots.Select(snap => (set.DiskId, Snapshot: snap))).ToList();
            var lines = snapshots.Select(x => $"disk {x.DiskId}  snapshot {x.Snapshot.Id,3}  {DateTimeOffset.FromUnixTimeSeconds(x.Snapshot.Date):yyyy-MM-dd HH:mm}Z  {(x.Snapshot.Active ? "active" : "      ")}  {x.Snapshot.SizeMb} MB  {x.Snapshot.Name}").ToList();
            var listed = Math.Clamp(lines.Count, 1, 10);
            var list = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = listed, Source = new ListWrapper<string>(new ObservableCollection<string>(lines)), SelectedItem = lines.Count > 0 ? 0 : null };
            var disk = new TextField { X = 30, Y = listed + 2, Width = 8, Text = info.Disks.FirstOrDefault(d => d.ImageId is not null)?.DiskId.ToString(System.Globalization.CultureInfo.InvariantCulture) ?? "0" };
            var name = new TextField { X = 30, Y = listed + 3, Width = 40, Text = "manual" };
            using var dialog = new Dialog { Title = $"Disk snapshots of VM {vm.Id} ({vm.Name})", Width = Dim.Percent(80), Height = listed + 10 };
            dialog.Add(new Label { X = 0, Y = 0, Text = lines.Count == 0 ? "No disk snapshot." : "Delete one, or revert its disk to it:" }, list,
                new Label { X = 0, Y = listed + 2, Text = "A new snapshot of disk:" }, disk, new Label { X = 0, Y = listed + 3, Text = "named:" }, name);
            foreach (var text in new[] { "_Delete the selected", "_Revert to the selected", "_Take a new one" }) dialog.AddButton(new Button { Text = text });
            dialog.AddButton(new Button { Text = "Close", IsDefault = true });
            app.Run(dialog);
            var id = vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture);
            string[] args;
            string summary, label;
            switch (dialog.Result)
            {
                case 0 or 1 when snapshots.Count > 0:
                    var (diskId, snapshot) = snapshots[Math.Clamp(list.SelectedItem ?? 0, 0, snapshots.Count - 1)];
                    var which = $"snapshot {snapshot.Id} ({snapshot.Name}) of disk {diskId} of VM {vm.Id} ({vm.Name})";
                    string[] target = [id, "--disk", diskId.ToString(System.Globalization.CultureInfo.InvariantCulture), "--snapshot", snapshot.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--config", configPath];
                    // OpenNebula reverts a powered-off VM only (docs/opennebula.md, the states table): a running one is powered off and resumed.
                    (summary, label, args) = dialog.Result == 0
                        ? ($"Delete {which}?\nIts data is gone afterwards.", $"snapshot delete of VM {vm.Id}", (string[])["snapshot", "delete", .. target])
                        : ($"Revert disk {diskId} of VM {vm.Id} ({vm.Name}) to snapshot {snapshot.Id} ({snapshot.Name})?\nEverything written to the disk since is lost. A running VM is powered off (ACPI) for it and resumed.",
                            $"snapshot revert of VM {vm.Id}", ["snapshot", "revert", .. target, "--poweroff"]);
                    break;
                case 2:
                    if (!int.TryParse(disk.Text.Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var newDisk) || info.Disks.All(d => d.DiskId != newDisk))
                    {
                        _said.Text = $"No snapshot taken: VM {vm.Id} has no disk {disk.Text.Trim()} (its disks: {string.Join(", ", info.Disks.Select(d => d.DiskId))}).";
                        return;
                    }
                    (summary, label, args) = ($"Take a snapshot of disk {newDisk} of VM {vm.Id} ({vm.Name}) named '{name.Text.Trim()}'?\nIt stays until it is deleted and takes space in the datastore.",
                        $"snapshot of VM {vm.Id}", ["snapshot", "create", id, "--disk", newDisk.ToString(System.Globalization.CultureInfo.InvariantCulture), "--name", name.Text.Trim(), "--config", configPath]);
                    break;
                default:
                    return;
            }
            if (MessageBox.Query(app, "Disk snapshots", summary, "Go ahead", "Cancel") != 0) return;
            if (Busy()) return;
            StartChild(app, label, args);
        }

        /// <summary>f: the selected VM's files in its latest restore point; the session goes when the browser closes.</summary>
        private void BrowseFiles(IApplication app, CancellationToken ct)
        {
            if (Busy() || SelectedVm() is not { } vm) return;
            _said.Text = $"Opening the files of VM {vm.Id} ({vm.Name})...";
            var said = new ConsoleFiles(app, config, secrets, config.Daemon.FilesDirectory).Run(vm, ct);
            if (said.Length > 0) _said.Text = said;
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
            var said = new ConsolePolicies(app, config.Catalog.Open(), vms, config.OpenNebula.ProxyVmId ?? ProxyIdentity.FromContext()).Run();
            if (said.Length > 0) _said.Text = said;
            _refreshes = FullEvery - 1;   // the next refresh reads the catalog again
        }

        /// <summary>
        /// r: the restore of the selected VM: as a new VM, or one disk as a new image, or one disk to a
        /// file on the appliance. A dialog takes the restore point, what to restore, the new VM's name,
        /// its NICs and the datastores (or the file); a summary says what will happen (Cancel is its
        /// default); then `proxybackup vm restore` runs beside the console, its progress in the jobs panel.
        /// </summary>
        private void RestoreSelected(IApplication app)
        {
            if (Busy()) return;
            if (SelectedVm() is not { } vm) return;
            IReadOnlyList<ProxyBackup.Repository.RestorePoint> points;
            try { points = [.. config.Repository.Open(secrets).ListRestorePoints(config.OpenNebula.Sources.Of(vm.Id)).OrderByDescending(pt => pt.Time)]; }
            catch (Exception e) when (e is ProxyBackup.Contracts.UserFacingException or IOException or UnauthorizedAccessException) { _said.Text = $"The repository cannot be read: {e.Message}"; return; }
            if (points.Count == 0) { _said.Text = $"VM {vm.Id} ({vm.Name}) has no restore point yet."; return; }

            string Describe(ProxyBackup.Repository.RestorePoint pt) =>
                $"{pt.Id}  {pt.Time:yyyy-MM-dd HH:mm}Z  {pt.Tags.GetValueOrDefault("kind", "")}  {pt.Disks.Count} disk(s), {CliFormat.Bytes(pt.Disks.Sum(d => d.Size))}";
            // The newest point's disks; a chosen older point is checked for the disk at Next.
            (string Text, string? Disk, bool ToFile)[] whatChoices = [("Every disk, as a new VM from the saved template", null, false),
                .. points[0].Disks.SelectMany(d => new[] { ($"Disk {d.Disk} ({CliFormat.Bytes(d.Size)}) as a new image", d.Disk, false), ($"Disk {d.Disk} ({CliFormat.Bytes(d.Size)}) to a raw file on this appliance", (string?)d.Disk, true) })];
            (string Text, NicMode Mode)[] nicChoices = [("Same networks, new addresses", NicMode.NoIp), ("Same networks and addresses (the original VM must be gone)", NicMode.Keep), ("No NICs", NicMode.NoNic)];
            var pointList = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = Math.Min(points.Count, 5), Source = new ListWrapper<string>(new ObservableCollection<string>(points.Select(Describe))), SelectedItem = 0 };
            var whatList = new ListView { X = 0, Y = Pos.Bottom(pointList) + 2, Width = Dim.Fill(), Height = Math.Min(whatChoices.Length, 5), Source = new ListWrapper<string>(new ObservableCollection<string>(whatChoices.Select(w => w.Text))), SelectedItem = 0 };
            var name = new TextField { X = 0, Y = Pos.Bottom(whatList) + 2, Width = 50, Text = $"{vm.Name}-restored" };
            var nicList = new ListView { X = 0, Y = Pos.Bottom(whatList) + 4, Width = Dim.Fill(), Height = 3, Source = new ListWrapper<string>(new ObservableCollection<string>(nicChoices.Select(n => n.Text))), SelectedItem = 0 };
            // The same defaults as 'vm restore': images in datastore 1, the system datastore the scheduler's choice.
            var imageDs = new TextField { X = 42, Y = Pos.Bottom(nicList) + 1, Width = 10, Text = "1" };
            var systemDs = new TextField { X = 42, Y = Pos.Bottom(nicList) + 2, Width = 10, Text = "" };
            var file = new TextField { X = 42, Y = Pos.Bottom(nicList) + 3, Width = Dim.Fill(), Text = "" };
            using var dialog = new Dialog { Title = $"Restore VM {vm.Id} ({vm.Name})", Width = Dim.Percent(80), Height = Math.Min(points.Count, 5) + Math.Min(whatChoices.Length, 5) + 20 };
            dialog.Add(new Label { X = 0, Y = 0, Text = "Restore point:" }, pointList,
                new Label { X = 0, Y = Pos.Bottom(pointList) + 1, Text = "What:" }, whatList,
                new Label { X = 0, Y = Pos.Bottom(whatList) + 1, Text = "Name of the new VM:" }, name,
                new Label { X = 0, Y = Pos.Bottom(whatList) + 3, Text = "NICs:" }, nicList,
                new Label { X = 0, Y = Pos.Bottom(nicList) + 1, Text = "Image datastore ID for the disks:" }, imageDs,
                new Label { X = 0, Y = Pos.Bottom(nicList) + 2, Text = "System datastore ID (empty: any):" }, systemDs,
                new Label { X = 0, Y = Pos.Bottom(nicList) + 3, Text = "File (a disk to a file):" }, file);
            dialog.AddButton(new Button { Text = "Cancel" });
            dialog.AddButton(new Button { Text = "Next", IsDefault = true });
            app.Run(dialog);
            if (dialog.Canceled || dialog.Result != 1) return;
            var point = points[Math.Clamp(pointList.SelectedItem ?? 0, 0, points.Count - 1)];
            var what = whatChoices[Math.Clamp(whatList.SelectedItem ?? 0, 0, whatChoices.Length - 1)];
            var nic = nicChoices[Math.Clamp(nicList.SelectedItem ?? 0, 0, nicChoices.Length - 1)];
            var (newName, image, system, path) = (name.Text.Trim(), imageDs.Text.Trim(), systemDs.Text.Trim(), file.Text.Trim());
            static bool Id(string text) => int.TryParse(text, System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out _);
            var problem = what.Disk is { } d && point.Disks.All(x => x.Disk != d) ? $"restore point {point.Id} has no disk {d}."
                : what.ToFile && !Path.IsPathRooted(path) ? "a disk to a file needs the file's absolute path."
                : what.ToFile && File.Exists(path) ? $"{path} exists: name a new file."
                : !what.ToFile && (!Id(image) || (system.Length > 0 && !Id(system))) ? "datastores are given by their numeric ID."
                : what.Disk is null && newName.Length == 0 ? "the new VM needs a name." : null;
            if (problem is not null) { _said.Text = $"Not restored: {problem}"; return; }
            string[] args = ["vm", "restore", vm.Id.ToString(System.Globalization.CultureInfo.InvariantCulture), "--point", point.Id, "--config", configPath];
            string summary;
            if (what.ToFile)
            {
                summary = $"Write disk {what.Disk} of VM {vm.Id} ({vm.Name}) from {Describe(point)}\nto {path} (raw) on this appliance.\nThe cloud is not touched.";
                args = [.. args, "--disk", what.Disk!, "--to", path];
            }
            else if (what.Disk is { } only)
            {
                summary = $"Restore disk {only} of VM {vm.Id} ({vm.Name}) from {Describe(point)}\nas a new image in datastore {image}.\nThe original VM is not touched.";
                args = [.. args, "--disk", only, "--image-ds", image];
            }
            else
            {
                summary = $"Restore VM {vm.Id} ({vm.Name}) from {Describe(point)}\nas a new VM named '{newName}', NICs: {nic.Text.ToLowerInvariant()};\n" +
                    $"its disks as new images in datastore {image}, the VM on {(system.Length == 0 ? "the system datastore the scheduler chooses" : $"system datastore {system}")}.\nThe original VM is not touched.";
                args = [.. args, "--name", newName, "--nics", nic.Mode.ToString(), "--image-ds", image, .. system.Length == 0 ? Array.Empty<string>() : ["--system-ds", system]];
            }
            if (MessageBox.Query(app, "Restore", summary, "Restore", "Cancel") != 0) return;
            StartChild(app, $"restore of VM {vm.Id} ({vm.Name})", args);
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

        /// <summary>x: the selected VM's running or queued backup is cancelled by the daemon; the job cleans up after itself.</summary>
        private void CancelSelected(IApplication app)
        {
            if (SelectedVm() is not { } vm) return;
            if (MessageBox.Query(app, "Cancel the backup", $"Cancel the backup of VM {vm.Id} ({vm.Name})?\nIt stops and removes its snapshot; no restore point is made.", "Cancel the backup", "Keep it running") != 0) return;
            AskDaemon(app, new { op = "cancel", vm = vm.Id }, answer => (bool?)answer["cancelled"] == true
                ? $"The backup of VM {vm.Id} ({vm.Name}) is being stopped; it cleans up after itself."
                : $"VM {vm.Id} ({vm.Name}) has no running backup.");
        }

        /// <summary>Asks the daemon off the UI thread; what it answers (or that it is not running) goes to the bottom line.</summary>
        private void AskDaemon(IApplication app, object request, Func<JsonObject, string> said) =>
            _ = Task.Run(async () =>
            {
                try
                {
                    var answer = await DaemonApi.AskAsync(config.Daemon.Socket, request, CancellationToken.None).ConfigureAwait(false);
                    app.Invoke(() => _said.Text = answer is null
                        ? "The daemon is not running: start it (systemctl start proxybackup), or use 'proxybackup vm' in a shell."
                        : said(answer));
                }
                catch (Exception e) when (e is IOException or System.Net.Sockets.SocketException or System.Text.Json.JsonException)
                {
                    app.Invoke(() => _said.Text = $"The daemon did not answer: {e.Message}");
                }
            });

        private void BackUpSelected(IApplication app)
        {
            if (SelectedVm() is not { } vm) return;
            if (MessageBox.Query(app, "Back up now", $"Back up VM {vm.Id} ({vm.Name}) now?", "Back up", "Cancel") != 0) return;
            AskDaemon(app, new { op = "backup", vm = vm.Id, full = false }, answer => (bool?)answer["ok"] != true ? $"Not started: {(string?)answer["error"]}"
                : (bool?)answer["queued"] == true ? $"Backup of VM {vm.Id} ({vm.Name}) handed to the daemon." : $"VM {vm.Id} ({vm.Name}) is already queued or running.");
        }
    }
}
