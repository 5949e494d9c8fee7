using ProxyBackup.TestSupport;
using ProxyBackup.XmlRpc;

namespace ProxyBackup.OpenNebula.Tests;

/// <summary>The models read the documents a real OpenNebula 6.10.5 returned.</summary>
public class FixtureParsingTests
{
    private static System.Xml.Linq.XElement Load(string name) => OneXml.Parse(File.ReadAllText(Fixtures.Path(name)));

    [Fact]
    public void Protected_vm_with_a_disk_snapshot()
    {
        var vm = VirtualMachine.Parse(Load("vm_protected_with_disk_snapshot.xml"));
        Assert.Equal(0, vm.Id);
        Assert.Equal("protected", vm.Name);
        Assert.Equal(VmSettlement.Settled, vm.Settlement);
        Assert.Equal("RUNNING", vm.StateName);
        Assert.Equal(2, vm.Disks.Count);
        var d0 = vm.Disk(0)!;
        Assert.Equal(0, d0.ImageId);
        Assert.Equal(256, d0.SizeMb);
        Assert.Equal("sda", d0.Target);
        Assert.Equal("raw", d0.Format);
        Assert.True(d0.IsClone);
        Assert.False(d0.IsVolatile);
        var snap = Assert.Single(vm.SnapshotsOf(0));
        Assert.Equal("pb-capture", snap.Name);
        Assert.True(snap.Active);
        Assert.Equal(-1, snap.Parent);
        Assert.Empty(vm.SnapshotsOf(1));
        Assert.Equal("proxyhost", vm.CurrentHistory!.HostName);
        Assert.Equal(101, vm.CurrentHistory.SystemDatastoreId);
    }

    [Fact]
    public void Proxy_with_attached_disk_is_found_by_image_id()
    {
        var proxy = VirtualMachine.Parse(Load("vm_proxy_with_attached_disk.xml"));
        var attached = proxy.Disks.Single(d => d.ImageId == 3);
        Assert.Equal(1, attached.DiskId);
        Assert.Equal("sdb", attached.Target);
        Assert.Equal("YES", proxy.UserTemplate.Text("PROXY"));
    }

    [Fact]
    public void Saved_image_and_restore_datablock()
    {
        var saved = OneImage.Parse(Load("image_saved_from_snapshot.xml"));
        Assert.Equal(ImageState.Ready, saved.State);
        Assert.Equal(256, saved.SizeMb);
        Assert.False(saved.Persistent);
        Assert.Equal("0", saved.Template.Text("SAVED_VM_ID"));
        var attached = OneImage.Parse(Load("image_attached_to_proxy.xml"));
        Assert.Contains(1, attached.Vms);
        var restore = OneImage.Parse(Load("image_restore_datablock_ready.xml"));
        Assert.True(restore.Persistent);
        Assert.Equal(ImageType.Datablock, restore.Type);
    }

    [Fact]
    public void Pools()
    {
        var vms = Load("vmpool_info.xml").Elements("VM").Select(VirtualMachine.Parse).ToList();
        Assert.Equal(2, vms.Count);
        Assert.All(vms, v => Assert.Null(v.Disks[0].Target)); // short bodies carry no TARGET
        var images = Load("imagepool_info.xml").Elements("IMAGE").Select(OneImage.Parse).ToList();
        Assert.NotEmpty(images);
        var ds = Load("datastorepool_info.xml").Elements("DATASTORE").Select(OneDatastore.Parse).ToList();
        Assert.Contains(ds, d => d.Type == DatastoreType.System);
        Assert.Contains(ds, d => d.Type == DatastoreType.Image && d.FreeMb > 0);
        var hosts = Load("hostpool_info.xml").Elements("HOST").Select(OneHost.Parse).ToList();
        Assert.Equal("proxyhost", hosts[0].Name);
        Assert.Equal(HostState.Monitored, hosts[0].State);
    }

    [Theory]
    [InlineData(VmState.Active, LcmState.Running, VmSettlement.Settled)]
    [InlineData(VmState.Poweroff, LcmState.LcmInit, VmSettlement.Settled)]
    [InlineData(VmState.Active, LcmState.Hotplug, VmSettlement.Transient)]
    [InlineData(VmState.Active, LcmState.DiskSnapshot, VmSettlement.Transient)]
    [InlineData(VmState.Active, LcmState.BootFailure, VmSettlement.Failed)]
    [InlineData(VmState.Active, LcmState.PrologMigrateUnknownFailure, VmSettlement.Failed)]
    [InlineData(VmState.Active, LcmState.Unknown, VmSettlement.Failed)]
    [InlineData(VmState.Active, LcmState.PrologMigrateSuspend, VmSettlement.Transient)]
    [InlineData(VmState.Done, LcmState.LcmInit, VmSettlement.Gone)]
    [InlineData(VmState.Cloning, LcmState.LcmInit, VmSettlement.Transient)]
    public void Settlement_follows_the_facts_sheet(VmState state, LcmState lcm, VmSettlement expected) =>
        Assert.Equal(expected, OneStateNames.Settlement(state, lcm));

    [Fact]
    public void State_names_match_oned_messages()
    {
        Assert.Equal("HOTPLUG_SAVEAS", OneStateNames.Describe(VmState.Active, LcmState.HotplugSaveas));
        Assert.Equal("DISK_SNAPSHOT_POWEROFF", OneStateNames.Describe(VmState.Active, LcmState.DiskSnapshotPoweroff));
        Assert.Equal("POWEROFF", OneStateNames.Describe(VmState.Poweroff, LcmState.LcmInit));
        Assert.Equal("USED", OneStateNames.Describe(ImageState.UsedPers));
    }

    [Fact]
    public void Documents_with_a_dtd_are_refused()
    {
        var e = Assert.Throws<OneProtocolException>(() => OneXml.Parse("<!DOCTYPE VM [<!ENTITY x SYSTEM \"file:///etc/passwd\">]><VM>&x;</VM>"));
        Assert.Contains("not valid XML", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void Templates_are_sent_as_xml_and_names_are_checked()
    {
        var t = new OneTemplate().Set("NAME", "a \"quoted\" \\ value]]>").AddVector("DISK", [new("IMAGE_ID", 12), new("READONLY", true)]);
        Assert.StartsWith("<TEMPLATE>", t.ToString(), StringComparison.Ordinal);
        Assert.Contains("<READONLY>YES</READONLY>", t.ToString(), StringComparison.Ordinal);
        Assert.Equal("a \"quoted\" \\ value]]>", System.Xml.Linq.XElement.Parse(t.ToString()).Element("NAME")!.Value);
        Assert.Throws<ArgumentException>(() => new OneTemplate().Set("BAD NAME", 1));
        Assert.False(OneTemplate.IsValidObjectName("pb-1-d0-12:00"));
        Assert.True(OneTemplate.IsValidObjectName("pb-1-d0-20250101T120000"));
    }

    [Fact]
    public void Credentials_never_show_the_secret()
    {
        var c = OneCredentials.FromAuthString("oneadmin:topsecret\n");
        Assert.Equal("oneadmin", c.User);
        Assert.DoesNotContain("topsecret", c.ToString(), StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => OneCredentials.FromAuthString("nocolon"));
        Assert.Throws<ArgumentException>(() => new OneCredentials("oneadmin", ""));
    }
}

/// <summary>An endpoint that echoes the request never gets the session string into an error (docs/opennebula.md, "Replies and errors").</summary>
public class SecretScrubbingTests
{
    private const string Password = "s3cret-Pw/+=";

    [Theory]
    [InlineData(ScriptedEndpoint.Echo.HttpError)]
    [InlineData(ScriptedEndpoint.Echo.Fault)]
    [InlineData(ScriptedEndpoint.Echo.FailureReply)]
    public async Task The_password_never_comes_back_in_an_error(ScriptedEndpoint.Echo echo)
    {
        await using var endpoint = ScriptedEndpoint.Echoing(echo);
        using var client = new OneClient(new OneClientOptions { Endpoint = endpoint.Uri, Credentials = new OneCredentials("oneadmin", Password), Retries = 0 });

        var e = await Assert.ThrowsAnyAsync<ProxyBackup.Contracts.UserFacingException>(() => client.VmInfoAsync(7));

        Assert.True(e.Message.Contains(SecretScrubber.Mask, StringComparison.Ordinal), e.Message);   // the echo arrived, scrubbed
        foreach (var form in new[] { Password, System.Security.SecurityElement.Escape(Password), Uri.EscapeDataString(Password) })
            Assert.DoesNotContain(form, e.ToString(), StringComparison.Ordinal);
    }
}
