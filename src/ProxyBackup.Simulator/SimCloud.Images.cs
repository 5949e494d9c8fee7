using System.Security.Cryptography;
using ProxyBackup.OpenNebula;

namespace ProxyBackup.Simulator;

/// <summary>Images, users and tokens.</summary>
public sealed partial class SimCloud
{
    private void CheckNewImage(string name, SimDatastore ds, long sizeMb)
    {
        if (!OneTemplate.IsValidObjectName(name)) throw new SimFailure(OneErrorCode.Allocate, $"Invalid NAME: '{name}' contains invalid characters.");
        if (_s.Images.FirstOrDefault(i => i.Name == name && i.Uid == 0) is { } taken)
            throw new SimFailure(OneErrorCode.Allocate, $"NAME is already taken by IMAGE {taken.Id}.");
        if (ds.Type is DatastoreType.System or DatastoreType.Backup)
            throw new SimFailure(OneErrorCode.Allocate, $"Cannot create image in datastore {ds.Id}: it is a {(ds.Type == DatastoreType.System ? "system" : "backup")} datastore.");
        if (ds.TotalMb - UsedMb(ds) < sizeMb) throw new SimFailure(OneErrorCode.Action, "Not enough space in datastore", ds.Id);
    }

    private SimImage NewImage(string name, ImageType type, long sizeMb, int dsId, string format, bool persistent)
    {
        var image = new SimImage
        {
            Id = _s.NextImageId++, Name = name, Type = type, SizeMb = sizeMb, DatastoreId = dsId, Format = format,
            Persistent = persistent, State = ImageState.Locked, PrevState = ImageState.Init, RegTime = Now,
        };
        image.Template["DEV_PREFIX"] = type == ImageType.Cdrom ? "hd" : "sd";
        _s.Images.Add(image);
        return image;
    }

    private static void SetImageState(SimImage image, ImageState state)
    {
        image.PrevState = image.State;
        image.State = state;
    }

    private void DropImage(SimImage image)
    {
        _s.Images.Remove(image);
        SimFiles.Delete(ImageFile(image.Id));
    }

    public int ImageAllocate(string templateText, int dsId, OpOutcome outcome)
    {
        lock (_gate)
        {
            System.Xml.Linq.XElement t;
            try { t = TemplateParser.Parse(templateText); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message); }
            var ds = Datastore(dsId) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting datastore [{dsId}].", dsId);
            var name = t.Element("NAME")?.Value ?? throw new SimFailure(OneErrorCode.Allocate, "No NAME in template.");
            var type = t.Element("TYPE")?.Value is { } typeName
                ? Enum.TryParse<ImageType>(typeName, true, out var parsed) ? parsed : throw new SimFailure(OneErrorCode.Allocate, $"Wrong image type: {typeName}.")
                : ImageType.Os;
            if (t.Element("PATH") is not null || t.Element("SOURCE") is not null)
                throw new SimFailure(OneErrorCode.Allocate, "The simulator creates empty images only (no PATH or SOURCE).");
            if (!long.TryParse(t.Element("SIZE")?.Value, out var size) || size <= 0)
                throw new SimFailure(OneErrorCode.Allocate, "Wrong number or missing SIZE attribute.");
            CheckNewImage(name, ds, size);
            var persistent = string.Equals(t.Element("PERSISTENT")?.Value, "YES", StringComparison.OrdinalIgnoreCase);
            var image = NewImage(name, type, size, dsId, t.Element("FORMAT")?.Value ?? "raw", persistent);
            foreach (var e in t.Elements().Where(e => e.Name.LocalName is not ("NAME" or "TYPE" or "SIZE" or "PERSISTENT" or "FORMAT")))
                image.Template[e.Name.LocalName] = e.Value;
            Save();
            Later(SimOperation.ImageAllocate, outcome,
                onSuccess: () => SetImageState(image, ImageState.Ready),
                onFailure: () =>
                {
                    SetImageState(image, ImageState.Error);
                    image.Template["ERROR"] = "Error creating datablock: mkfs failed";
                },
                slowWork: () => SimFiles.CreateSparse(ImageFile(image.Id), size * MiB));
            return image.Id;
        }
    }

    public int ImageDelete(int id, bool force, OpOutcome outcome)
    {
        lock (_gate)
        {
            var image = ImageOrThrow(id);
            if (image.State is ImageState.Used or ImageState.UsedPers or ImageState.LockedUsed or ImageState.LockedUsedPers or ImageState.Clone || image.Vms.Count > 0)
                throw new SimFailure(OneErrorCode.Action, $"Cannot delete image. There are {image.Vms.Count} VMs using it.");
            if (image.State == ImageState.Locked && !force)
                throw new SimFailure(OneErrorCode.Internal, "Image locked, use --force flag to delete it.", id);
            if (image.State == ImageState.Delete)
                throw new SimFailure(OneErrorCode.Action, "Image is already being deleted.", id);
            // Deleting a save-as image that is still being copied ends the source VM's HOTPLUG_SAVEAS.
            foreach (var vm in _s.Vms)
                foreach (var d in vm.Disks.Where(d => d.Element("HOTPLUG_SAVE_AS")?.Value == id.ToString(System.Globalization.CultureInfo.InvariantCulture)).ToList())
                {
                    ClearSaveAsFlags(d);
                    Return(vm);
                }
            SetImageState(image, ImageState.Delete);
            Save();
            Later(SimOperation.ImageDelete, outcome,
                onSuccess: () => DropImage(image),
                onFailure: () =>
                {
                    SetImageState(image, force ? image.State : ImageState.Error);
                    if (force) DropImage(image);
                    else image.Template["ERROR"] = "Error deleting image: rm failed";
                });
            return id;
        }
    }

    public int ImagePersistent(int id, bool persistent)
    {
        lock (_gate)
        {
            var image = ImageOrThrow(id);
            if (image.Type is not (ImageType.Os or ImageType.Datablock or ImageType.Cdrom))
                throw new SimFailure(OneErrorCode.Internal, "Only OS, DATABLOCK and CDROM images can be persistent.", id);
            if (image.State is not (ImageState.Ready or ImageState.Error or ImageState.Disabled))
                throw new SimFailure(OneErrorCode.Internal, $"Cannot change persistent state of an image in state {OneStateNames.Describe(image.State)}.", id);
            image.Persistent = persistent;
            Save();
            return id;
        }
    }

    public int ImageUpdate(int id, string templateText, int type)
    {
        if (type is not (0 or 1)) throw new SimFailure(OneErrorCode.XmlRpcApi, "Wrong update type.", id);
        lock (_gate)
        {
            var image = ImageOrThrow(id);
            System.Xml.Linq.XElement t;
            try { t = TemplateParser.Parse(templateText); }
            catch (TemplateSyntaxException e) { throw new SimFailure(OneErrorCode.Internal, e.Message, id); }
            if (type == 0) image.Template.Clear();
            foreach (var e in t.Elements()) image.Template[e.Name.LocalName] = e.Value;
            Save();
            return id;
        }
    }

    public int ImageRename(int id, string name)
    {
        lock (_gate)
        {
            var image = ImageOrThrow(id);
            if (!OneTemplate.IsValidObjectName(name)) throw new SimFailure(OneErrorCode.Action, $"Invalid name: {name}.", id);
            if (_s.Images.Any(i => i.Name == name && i.Id != id)) throw new SimFailure(OneErrorCode.Action, $"NAME is already taken by IMAGE.", id);
            image.Name = name;
            Save();
            return id;
        }
    }

    // ---- users ------------------------------------------------------------------------------

    public void SetPassword(string user, string password)
    {
        lock (_gate)
        {
            var u = _s.Users.FirstOrDefault(x => x.Name == user);
            if (u is null) _s.Users.Add(u = new SimUser { Id = _s.Users.Max(x => x.Id) + 1, Name = user, Password = password, Gid = 1 });
            u.Password = password;
            Save();
        }
    }

    public string? Password(string user)
    {
        lock (_gate) return _s.Users.FirstOrDefault(x => x.Name == user)?.Password;
    }

    /// <summary>Returns the user for a valid "user:password" or "user:token" session, else null.</summary>
    public SimUser? Authenticate(string session)
    {
        var colon = session.IndexOf(':', StringComparison.Ordinal);
        if (colon <= 0) return null;
        var (name, secret) = (session[..colon], session[(colon + 1)..]);
        lock (_gate)
        {
            var user = _s.Users.FirstOrDefault(u => u.Name == name);
            if (user is null || secret.Length == 0) return null;
            if (FixedEquals(user.Password, secret)) return user;
            return user.Tokens.Any(t => FixedEquals(t.Token, secret) && (t.Expires < 0 || t.Expires > Now)) ? user : null;
        }
    }

    private static bool FixedEquals(string a, string b) =>
        CryptographicOperations.FixedTimeEquals(System.Text.Encoding.UTF8.GetBytes(a), System.Text.Encoding.UTF8.GetBytes(b));

    public string Login(string userName, string token, int validSeconds)
    {
        lock (_gate)
        {
            var user = _s.Users.FirstOrDefault(u => u.Name == userName) ?? throw new SimFailure(OneErrorCode.NoExists, $"Error getting user {userName}.");
            if (validSeconds == 0)
            {
                user.Tokens.RemoveAll(t => token.Length == 0 || t.Token == token);
                Save();
                return token;
            }
            if (user.Tokens.Count >= 10) throw new SimFailure(OneErrorCode.Action, "Max number of tokens limit reached.");
            var value = token.Length > 0 ? token : Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(20));
            user.Tokens.Add(new SimToken(value, validSeconds < 0 ? -1 : Now + validSeconds));
            Save();
            return value;
        }
    }
}
