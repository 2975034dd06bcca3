using MailKit;
using MailKit.Net.Imap;
using Tidemark.Api;

namespace Tidemark.Interop.Tests.Infrastructure;

/// <summary>
/// The setup the mail recovery tests start from, made once here: an <see cref="Ext4Volume"/> (a
/// server, a volume attached and mounted read-write) with a "production" Dovecot serving the users'
/// homes on it (alice/alicepw, bob/bobpw, master user admin). Disposed in reverse: Dovecot, then the volume.
/// </summary>
internal sealed class MailStoreVolume : IAsyncDisposable
{
    private readonly Ext4Volume _volume;

    private MailStoreVolume(Ext4Volume volume, DovecotInstance dovecot)
    {
        _volume = volume;
        Dovecot = dovecot;
    }

    public ServerProcess Server => _volume.Server;

    public TidemarkClient Client => _volume.Client;

    /// <summary>The live volume, mounted read-write at <see cref="AttachedExport.MountPoint"/>: the users' homes.</summary>
    public AttachedExport Live => _volume.Live;

    public DovecotInstance Dovecot { get; }

    /// <param name="format">Dovecot's mail location: "maildir" or "mdbox"</param>
    public static async Task<MailStoreVolume> StartAsync(TempDirectory temp, string volume, long bytes, string format = "maildir")
    {
        HostRequirements.RequireFileSystemStack();
        await DovecotInstance.RequireAsync();
        var ext4 = await Ext4Volume.StartAsync(temp, volume, bytes, storeCapacity: "2G");
        try
        {
            return new MailStoreVolume(ext4, await DovecotInstance.StartAsync(temp.CreateDirectory("dc"), ext4.Live.MountPoint, format));
        }
        catch
        {
            await ext4.DisposeAsync();
            throw;
        }
    }

    /// <summary>An IMAP session on the production Dovecot as the user (the caller disconnects and disposes it).</summary>
    public async Task<ImapClient> LoginAsync(string user, string password)
    {
        var imap = new ImapClient();
        await imap.ConnectAsync("127.0.0.1", Dovecot.ImapPort, MailKit.Security.SecureSocketOptions.None);
        await imap.AuthenticateAsync(user, password);
        return imap;
    }

    /// <summary>Appends a message to the user's INBOX over IMAP with the flags, keywords and received date given.</summary>
    public async Task AppendAsync(string user, string password, MimeKit.MimeMessage message, MailKit.MessageFlags flags, IEnumerable<string> keywords, DateTimeOffset received)
    {
        using var imap = await LoginAsync(user, password);
        await imap.Inbox.AppendAsync(new MailKit.AppendRequest(message, flags, keywords, received));
        await imap.DisconnectAsync(true);
    }

    /// <summary>Deletes and expunges the user's INBOX messages with this Message-ID, as the user's mail client would.</summary>
    public async Task ExpungeAsync(string user, string password, string messageId)
    {
        using var imap = await LoginAsync(user, password);
        await imap.Inbox.OpenAsync(MailKit.FolderAccess.ReadWrite);
        await imap.Inbox.AddFlagsAsync(await imap.Inbox.SearchAsync(MailKit.Search.SearchQuery.HeaderContains("Message-ID", messageId)), MailKit.MessageFlags.Deleted, silent: true);
        await imap.Inbox.ExpungeAsync();
        await imap.DisconnectAsync(true);
    }

    public async ValueTask DisposeAsync()
    {
        try
        {
            await Dovecot.DisposeAsync();
        }
        finally
        {
            await _volume.DisposeAsync();
        }
    }
}
