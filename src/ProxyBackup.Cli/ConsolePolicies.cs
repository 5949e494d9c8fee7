using System.Collections.ObjectModel;
using ProxyBackup.Catalog;
using ProxyBackup.Contracts;
using ProxyBackup.OpenNebula;
using ProxyBackup.Scheduler;
using Terminal.Gui.App;
using Terminal.Gui.Input;
using Terminal.Gui.ViewBase;
using Terminal.Gui.Views;

namespace ProxyBackup.Cli;

/// <summary>
/// The console's policies screen (p): every policy with its schedule, what it selects now and its
/// next run; n new, Enter edit, d delete, s save, Esc close. Changes stay in this screen until s
/// writes them all; closing with unsaved changes asks first (docs/operations.md, "The console").
/// </summary>
internal sealed class ConsolePolicies(IApplication app, SqlCatalog catalog, IReadOnlyList<VirtualMachine>? vms, int? proxyVmId)
{
    private readonly List<ProtectionPolicy> _policies = [.. catalog.Policies().OrderBy(p => p.Name, StringComparer.Ordinal)];
    private readonly HashSet<string> _removed = new(StringComparer.Ordinal);
    private readonly HashSet<string> _changed = new(StringComparer.Ordinal);

    /// <summary>Runs the screen; returns what the bottom line of the dashboard should say.</summary>
    public string Run()
    {
        var selected = 0;
        while (true)
        {
            var list = new ListView { X = 0, Y = 1, Width = Dim.Fill(), Height = Dim.Fill(), Source = new ListWrapper<string>(new ObservableCollection<string>(Lines())) };
            if (_policies.Count > 0) list.SelectedItem = Math.Min(selected, _policies.Count - 1);
            using var dialog = new Dialog { Title = "Policies   n: new   Enter: edit   d: delete   s: save all   Esc: close", Width = Dim.Percent(90), Height = Dim.Percent(70) };
            dialog.Add(new Label { X = 0, Y = 0, Text = _policies.Count == 0 ? "No policies yet: n makes one." : $"{"NAME",-16} {"SCHEDULE",-16} {"NEXT RUN",-17} SELECTS" }, list);
            var action = ' ';
            // Taken before the list sees them: its type-to-search would swallow the letters.
            void OnKey(object? sender, Key key)
            {
                if (!ReferenceEquals(app.TopRunnableView, dialog)) return;
                action = key == Key.N ? 'n' : key == Key.D ? 'd' : key == Key.S ? 's' : key == Key.Enter ? 'e' : ' ';
                if (action == ' ') return;
                key.Handled = true;
                app.RequestStop(dialog);
            }
            app.Keyboard.KeyDown += OnKey;
            try { app.Run(dialog); }
            finally { app.Keyboard.KeyDown -= OnKey; }
            selected = list.SelectedItem ?? 0;
            var current = _policies.Count > 0 ? _policies[Math.Clamp(selected, 0, _policies.Count - 1)] : null;
            switch (action)
            {
                case 'n': Edit(null); break;
                case 'e' when current is not null: Edit(current); break;
                case 'd' when current is not null:
                    _policies.Remove(current);
                    _removed.Add(current.Name);
                    break;
                case 's': return Save();
                case ' ':
                    // Esc: leave, after asking when something would be lost.
                    if (_changed.Count + _removed.Count == 0) return "";
                    if (MessageBox.Query(app, "Policies", "Discard the changes made here?", "Discard", "Keep editing") == 0) return "Policy changes discarded.";
                    break;
            }
        }
    }

    private IEnumerable<string> Lines()
    {
        var now = DateTimeOffset.UtcNow;
        foreach (var p in _policies)
        {
            var next = p.Problems().Count == 0 ? $"{p.CompiledSchedule().Next(now):yyyy-MM-dd HH:mm}Z" : "(invalid)";
            yield return $"{p.Name,-16} {p.Schedule,-16} {next,-17} {Preview(p)}{(_changed.Contains(p.Name) ? "   (not saved)" : "")}";
        }
    }

    /// <summary>What a policy selects in the cloud now, as the scheduler would (the proxy VM never).</summary>
    private string Preview(ProtectionPolicy policy)
    {
        if (vms is null) return "(the cloud cannot be reached: no preview)";
        var matched = vms.Where(v => v.Id != proxyVmId && policy.Selection.Matches(v)).Select(v => v.Name).ToList();
        return matched.Count == 0 ? "no VM" : $"{matched.Count} VM(s): {string.Join(", ", matched.Take(6))}{(matched.Count > 6 ? ", ..." : "")}";
    }

    /// <summary>The editor: every field validated as a whole, the selection and next runs previewed while typing.</summary>
    private void Edit(ProtectionPolicy? policy)
    {
        var fields = new (string Label, string Value)[]
        {
            ("Name", policy?.Name ?? ""),
            ("Schedule (cron)", policy?.Schedule ?? "0 2 * * *"),
            ("Time zone", policy?.TimeZone ?? "UTC"),
            ("VMs (names or IDs, commas)", policy is null ? "" : string.Join(", ", policy.Selection.VmIds.Select(i => i.ToString(System.Globalization.CultureInfo.InvariantCulture)).Concat(policy.Selection.VmNames))),
            ("Name pattern (web-*)", policy?.Selection.NamePattern ?? ""),
            ("Label", policy?.Selection.Label ?? ""),
            ("Attribute (NAME=VALUE)", policy?.Selection.AttributeName is { } a ? policy.Selection.AttributeValue is { } v ? $"{a}={v}" : a : ""),
            ("Window (4h; empty: none)", policy?.Window is { } w ? $"{w.TotalHours:0.##}h" : ""),
            ("Keep last", Count(policy?.Retention.KeepLast)),
            ("Keep daily", Count(policy?.Retention.KeepDaily)),
            ("Keep weekly", Count(policy?.Retention.KeepWeekly)),
            ("Keep monthly", Count(policy?.Retention.KeepMonthly)),
        };
        using var dialog = new Dialog { Title = policy is null ? "New policy" : $"Policy {policy.Name}", Width = Dim.Percent(90), Height = fields.Length + 9 };
        var inputs = fields.Select((f, i) => new TextField { X = 30, Y = i, Width = Dim.Fill(), Text = f.Value }).ToList();
        for (var i = 0; i < fields.Length; i++) dialog.Add(new Label { X = 0, Y = i, Text = fields[i].Label + ":" }, inputs[i]);
        var selects = new Label { X = 0, Y = fields.Length + 1, Width = Dim.Fill() };
        var runs = new Label { X = 0, Y = fields.Length + 2, Width = Dim.Fill() };
        dialog.Add(selects, runs);
        void Update()
        {
            var (built, problems) = Build(inputs.Select(t => t.Text).ToList(), policy);
            selects.Text = problems.Count > 0 ? $"Not valid: {string.Join("; ", problems)}" : $"Selects {Preview(built)}";
            runs.Text = problems.Count > 0 ? "" : $"Next runs: {string.Join(", ", NextRuns(built))}";
        }
        foreach (var input in inputs) input.TextChanged += (_, _) => Update();
        Update();
        dialog.AddButton(new Button { Text = "Cancel" });
        dialog.AddButton(new Button { Text = "OK", IsDefault = true });
        while (true)
        {
            app.Run(dialog);
            if (dialog.Canceled || dialog.Result != 1) return;
            var (edited, problems) = Build(inputs.Select(t => t.Text).ToList(), policy);
            if (problems.Count == 0 && (policy?.Name == edited.Name || _policies.All(p => p.Name != edited.Name)))
            {
                if (policy is not null) { _policies.Remove(policy); if (policy.Name != edited.Name) _removed.Add(policy.Name); }
                _policies.Add(edited);
                _policies.Sort((x, y) => string.CompareOrdinal(x.Name, y.Name));
                _changed.Add(edited.Name);
                _removed.Remove(edited.Name);
                return;
            }
            MessageBox.Query(app, "Not saved", problems.Count > 0 ? string.Join("\n", problems) : $"There is already a policy named '{edited.Name}'.", "OK");
        }
    }

    private static string Count(int? n) => n is > 0 ? n.Value.ToString(System.Globalization.CultureInfo.InvariantCulture) : "";

    private static IEnumerable<string> NextRuns(ProtectionPolicy policy)
    {
        var schedule = policy.CompiledSchedule();
        var at = DateTimeOffset.UtcNow;
        for (var i = 0; i < 3; i++) yield return $"{(at = schedule.Next(at)):yyyy-MM-dd HH:mm}Z";
    }

    /// <summary>The policy the fields describe, or what is wrong with them (the same rules as 'policy add').</summary>
    private static (ProtectionPolicy Policy, IReadOnlyList<string> Problems) Build(IReadOnlyList<string> f, ProtectionPolicy? original)
    {
        var problems = new List<string>();
        int Number(int i)
        {
            if (f[i].Trim().Length == 0) return 0;
            if (int.TryParse(f[i].Trim(), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out var n)) return n;
            problems.Add($"Keep counts are whole numbers (got '{f[i]}')");
            return 0;
        }
        TimeSpan? window = null;
        if (f[7].Trim().Length > 0)
        {
            try { window = CliFormat.ParseDuration(f[7]); }
            catch (CliException e) { problems.Add(e.Message); }
        }
        var attribute = f[6].Trim().Length == 0 ? null : f[6].Trim().Split('=', 2);
        static string? Text(string s) => s.Trim().Length == 0 ? null : s.Trim();
        var policy = (original ?? new ProtectionPolicy { Name = "", Schedule = "" }) with
        {
            Name = f[0].Trim(), Schedule = f[1].Trim(), TimeZone = f[2].Trim().Length == 0 ? "UTC" : f[2].Trim(), Window = window,
            Selection = VmSelection.ByIdOrName(f[3].Split(',')) with { NamePattern = Text(f[4]), Label = Text(f[5]), AttributeName = attribute?[0], AttributeValue = attribute?.Length > 1 ? attribute[1] : null },
            Retention = (original?.Retention ?? new RetentionPolicy()) with { KeepLast = Number(8), KeepDaily = Number(9), KeepWeekly = Number(10), KeepMonthly = Number(11) },
        };
        problems.AddRange(policy.Problems());
        return (policy, problems);
    }

    /// <summary>Writes every change at once: saved policies replace their old versions, removed ones go.</summary>
    private string Save()
    {
        foreach (var name in _removed) catalog.RemovePolicy(name);
        foreach (var policy in _policies.Where(p => _changed.Contains(p.Name))) ProtectionPolicyRules.Save(catalog, policy);
        var said = $"Saved: {_changed.Count} policy(ies) written, {_removed.Count} removed.";
        _changed.Clear();
        _removed.Clear();
        return said;
    }
}
