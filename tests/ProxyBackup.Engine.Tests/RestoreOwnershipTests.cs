using ProxyBackup.OpenNebula;
using ProxyBackup.Contracts;

namespace ProxyBackup.Engine.Tests;

/// <summary>
/// What a restore makes carries the VM's name and goes back to its owner (docs/operations.md, "Names
/// and owners of what a restore makes"); a template-only restore stops at the template.
/// </summary>
public class RestoreOwnershipTests
{
    private static async Task<(VirtualMachine Web, int Alice)> WebOwnedByAliceAsync(EngineWorld w)
    {
        w.Sim.Cloud.SetPassword("alice", "apw");
        using var asAlice = w.ClientOf("alice", "apw");
        var alice = (await asAlice.UserInfoAsync()).Id;
        var web = await w.VmAsync("web-01");
        await w.Client.ChownAsync(OneObject.Vm, web.Id, alice, 1);
        return (await w.VmAsync("web-01"), alice);
    }

    [Fact]
    public async Task A_restored_vm_and_its_images_carry_the_name_given_and_belong_to_the_original_owner()
    {
        await using var w = await EngineWorld.StartAsync();
        var (web, alice) = await WebOwnedByAliceAsync(w);
        Assert.Equal((alice, 1), (web.Uid, web.Gid));
        var backup = await w.Backup.RunAsync(web.Id, new BackupOptions());

        var result = await w.Restore.RestoreVmAsync(backup.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-01-copy" });
        Assert.Empty(result.Warnings!);
        var vm = await w.Client.VmInfoAsync(result.VmId!.Value);
        Assert.Equal(("web-01-copy", alice, 1, "users"), (vm.Name, vm.Uid, vm.Gid, vm.GroupName));
        foreach (var (disk, imageId) in result.Images)
        {
            var image = await w.Client.ImageInfoAsync(imageId);
            Assert.Equal(($"web-01-copy-disk-{disk}", alice), (image.Name, image.Uid));
        }
        Assert.Empty(w.Catalog.Pending());
    }

    [Fact]
    public async Task An_account_that_may_not_change_owners_keeps_what_it_made_and_says_so_once()
    {
        await using var w = await EngineWorld.StartAsync();
        var (web, alice) = await WebOwnedByAliceAsync(w);
        var backup = await w.Backup.RunAsync(web.Id, new BackupOptions());
        w.ActAs("backup-operator", "opw");   // an account of the users group: no ADMIN right to give objects away
        var me = (await w.Client.UserInfoAsync()).Id;

        var result = await w.Restore.RestoreVmAsync(backup.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1 });
        var warning = Assert.Single(result.Warnings!);
        Assert.StartsWith($"what the restore made stays owned by the appliance's user: it could not be given to the original owner alice (user {alice}, group users): ", warning, StringComparison.Ordinal);
        Assert.Contains("Not authorized", warning, StringComparison.Ordinal);
        Assert.Equal(me, (await w.Client.VmInfoAsync(result.VmId!.Value)).Uid);
        Assert.Contains(w.Catalog.LogOf(result.JobId), l => l.Level == "warning" && l.Message == warning);
        Assert.Matches(@"^web-01-restored-\d{8}T\d{6}$", (await w.Client.VmInfoAsync(result.VmId!.Value)).Name);
    }

    [Fact]
    public async Task A_template_only_restore_leaves_the_template_with_its_disks_and_no_vm()
    {
        await using var w = await EngineWorld.StartAsync();
        var web = await w.VmAsync("web-01");
        var backup = await w.Backup.RunAsync(web.Id, new BackupOptions());
        var vmsBefore = (await w.Client.VmPoolAsync()).Count;

        var result = await w.Restore.RestoreVmAsync(backup.RestorePoint, new RestoreVmOptions { ImageDatastoreId = 1, Name = "web-01-tpl", TemplateOnly = true });
        Assert.Null(result.VmId);
        var template = (await w.Client.TemplatePoolAsync()).Single(t => t.Id == result.TemplateId);
        Assert.Equal("web-01-tpl", template.Name);
        var disks = template.Template.Elements("DISK").Select(d => int.Parse(d.Element("IMAGE_ID")!.Value, System.Globalization.CultureInfo.InvariantCulture)).Order().ToList();
        Assert.Equal(result.Images.Values.Order(), disks);
        Assert.Equal(vmsBefore, (await w.Client.VmPoolAsync()).Count);
        Assert.Empty(w.Catalog.Pending());                   // nothing left for the cleanup to take away

        // The template works: instantiated, its VM runs on the restored disks, bit-exact.
        var vmId = await w.Client.TemplateInstantiateAsync(template.Id, "from-the-template", hold: false, extra: null);
        await w.Steps.Waiter.VmRunningAsync(vmId, TimeSpan.FromMinutes(1));
        var restored = await w.Client.VmInfoAsync(vmId);
        Assert.All(web.Disks.Where(d => d.ImageId is not null), d => Assert.Equal(w.DiskSha256(web.Id, d.DiskId), w.DiskSha256(restored.Id, d.DiskId)));
    }
}
