using System.CommandLine;
using ProxyBackup.Catalog;
using ProxyBackup.Repository;
using ProxyBackup.Scheduler;
using ProxyBackup.Contracts;

namespace ProxyBackup.Cli;

/// <summary>`proxybackup policy add|list|remove`: protection policies in the catalog.</summary>
internal static class PolicyCommands
{
    public static Command Build()
    {
        var cmd = new Command("policy", "Protection policies: which VMs, when, how, how long.");
        cmd.Options.Add(EngineHost.Catalog);
        // Without --catalog, the configured catalog (a shared one on PostgreSQL too).
        cmd.Options.Add(DaemonCommand.ConfigFile);
        var name = new Argument<string>("name");
        var schedule = new Option<string>("--schedule") { Required = true, Description = "Cron expression, e.g. '0 2 * * *' or @daily." };
        var zone = new Option<string>("--time-zone") { DefaultValueFactory = _ => "UTC" };
        var window = new Option<string?>("--window") { Description = "No VM starts later than this after the scheduled time, e.g. 4h." };
        var vms = new Option<string[]>("--vm") { Description = "VM ID or name; repeatable." };
        var pattern = new Option<string?>("--name-pattern") { Description = "Glob on VM names, e.g. 'web-*'." };
        var label = new Option<string?>("--label");
        var attribute = new Option<string?>("--attribute") { Description = "NAME=VALUE of the VM's USER_TEMPLATE, e.g. BACKUP_POLICY=gold (NAME alone: present)." };
        var exclude = new Option<int[]>("--exclude-disk");
        var fullRuns = new Option<int>("--full-every-runs");
        var fullDays = new Option<int>("--full-every-days");
        var keepLast = new Option<int>("--keep-last");
        var keepDaily = new Option<int>("--keep-daily");
        var keepWeekly = new Option<int>("--keep-weekly");
        var keepMonthly = new Option<int>("--keep-monthly");
        var keepYearly = new Option<int>("--keep-yearly");
        var priority = new Option<int>("--priority");
        var retries = new Option<int>("--retries") { DefaultValueFactory = _ => 2 };
        var disabled = new Option<bool>("--disabled");
        var add = new Command("add", "Add or replace a policy (validated whole; nothing is saved half-valid).")
        { name, schedule, zone, window, vms, pattern, label, attribute, exclude, fullRuns, fullDays, keepLast, keepDaily, keepWeekly, keepMonthly, keepYearly, priority, retries, disabled };
        foreach (var o in ConsistencyOptions.All) add.Options.Add(o);
        var drillSchedule = new Option<string?>("--drill-schedule") { Description = "Cron expression: when each VM of the policy is restored on trial into a sandbox (docs/operations.md, \"Restore drills\")." };
        var drillImageDs = new Option<int>("--drill-image-ds") { DefaultValueFactory = _ => 1, Description = "Image datastore for the drills' disks." };
        var drillSystemDs = new Option<int?>("--drill-system-ds") { Description = "System datastore for the drills' VMs." };
        var drillCheck = new Option<string?>("--drill-check") { Description = "Run once a drill's VM runs; a non-zero exit fails the drill." };
        foreach (var o in new Option[] { drillSchedule, drillImageDs, drillSystemDs, drillCheck }) add.Options.Add(o);
        add.SetAction(p =>
        {
            var attr = p.GetValue(attribute)?.Split('=', 2);
            var policy = new ProtectionPolicy
            {
                Name = p.GetValue(name)!, Schedule = p.GetValue(schedule)!, TimeZone = p.GetValue(zone)!, Enabled = !p.GetValue(disabled),
                Window = p.GetValue(window) is { } w ? CliFormat.ParseDuration(w) : null,
                Selection = VmSelection.ByIdOrName(p.GetValue(vms) ?? []) with { NamePattern = p.GetValue(pattern), Label = p.GetValue(label), AttributeName = attr?[0], AttributeValue = attr?.Length > 1 ? attr[1] : null },
                ExcludeDisks = p.GetValue(exclude) ?? [], FullEveryRuns = p.GetValue(fullRuns), FullEveryDays = p.GetValue(fullDays),
                Retention = new RetentionPolicy { KeepLast = p.GetValue(keepLast), KeepDaily = p.GetValue(keepDaily), KeepWeekly = p.GetValue(keepWeekly), KeepMonthly = p.GetValue(keepMonthly), KeepYearly = p.GetValue(keepYearly) },
                Priority = p.GetValue(priority), Retries = p.GetValue(retries), Consistency = ConsistencyOptions.From(p),
                Drill = new DrillSchedule { Schedule = p.GetValue(drillSchedule), ImageDatastoreId = p.GetValue(drillImageDs), SystemDatastoreId = p.GetValue(drillSystemDs), CheckCommand = p.GetValue(drillCheck) },
            };
            var problems = policy.Problems();
            if (problems.Count > 0) throw new CliException($"Policy '{policy.Name}' not saved: {string.Join("; ", problems)}.");
            ProtectionPolicyRules.Save(EngineHost.CatalogOf(p).Open(), policy);
            Console.WriteLine($"Policy '{policy.Name}' saved; next run {policy.CompiledSchedule().Next(DateTimeOffset.UtcNow):yyyy-MM-dd HH:mm}Z.");
            return 0;
        });
        var list = new Command("list", "List policies and their next run.");
        var json = new Option<bool>("--json");
        list.Options.Add(json);
        list.SetAction(p =>
        {
            var policies = EngineHost.CatalogOf(p).Open().Policies();
            if (p.GetValue(json)) { CliFormat.PrintJson(policies); return 0; }
            foreach (var pol in policies)
                Console.WriteLine($"{pol.Name,-16} {(pol.Enabled ? "enabled " : "disabled")} {pol.Schedule,-16} {pol.TimeZone,-14} next {pol.CompiledSchedule().Next(DateTimeOffset.UtcNow):yyyy-MM-dd HH:mm}Z");
            if (policies.Count == 0) Console.WriteLine("No policies.");
            return 0;
        });
        var removeName = new Argument<string>("name");
        var remove = new Command("remove", "Remove a policy (its restore points stay).") { removeName };
        remove.SetAction(p =>
        {
            if (!EngineHost.CatalogOf(p).Open().RemovePolicy(p.GetValue(removeName)!)) throw new CliException($"There is no policy '{p.GetValue(removeName)}'.");
            Console.WriteLine($"Policy '{p.GetValue(removeName)}' removed.");
            return 0;
        });
        cmd.Subcommands.Add(add);
        cmd.Subcommands.Add(list);
        cmd.Subcommands.Add(remove);
        return cmd;
    }
}
