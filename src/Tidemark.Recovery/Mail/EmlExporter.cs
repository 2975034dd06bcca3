using System.Security.Cryptography;
using System.Text;

namespace Tidemark.Recovery.Mail;

/// <summary>
/// Writes found messages as .eml files (the bytes as stored, RFC 5322), for legal hold or hand-off:
/// DIR/USER/FOLDER.../yyyyMMdd-HHmmss-HASH.eml with the file's mtime set to the INTERNALDATE. Names
/// are built from sanitized parts and a content hash, never from header text, so a hostile message
/// cannot steer where it is written; a file already there with the same name is the same message.
/// </summary>
public static class EmlExporter
{
    public static async Task<IReadOnlyList<RestoreOutcome>> ExportAsync(IReadOnlyList<FoundMessage> messages, string directory, CancellationToken ct)
    {
        Directory.CreateDirectory(directory);
        var outcomes = new List<RestoreOutcome>();
        foreach (var message in messages)
        {
            var folder = Path.Combine([directory, Safe(message.User), .. message.Folder.Split('/').Select(Safe)]);
            string target = folder;
            try
            {
                string hash;
                await using (var file = File.OpenRead(message.Path))
                {
                    hash = await ContentHash.ComputeAsync(file, ct);
                }

                target = Path.Combine(folder, $"{message.InternalDate.UtcDateTime:yyyyMMdd-HHmmss}-{hash[..16]}.eml");
                if (File.Exists(target))
                {
                    outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Duplicate, target, "already exported"));
                    continue;
                }

                Directory.CreateDirectory(folder);

                // Written beside the target and renamed: an interrupted export leaves no half file
                // that a second run would take for the whole message.
                var temporary = Path.Combine(folder, $".{Convert.ToHexStringLower(RandomNumberGenerator.GetBytes(6))}.tmp");
                File.Copy(message.Path, temporary);
                File.SetLastWriteTimeUtc(temporary, message.InternalDate.UtcDateTime);
                File.Move(temporary, target);
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Restored, target));
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                outcomes.Add(new RestoreOutcome(message, RestoreOutcome.Failed, target, e.Message));
            }
        }

        return outcomes;
    }

    /// <summary>One path component: letters, digits and -_.@+ kept, the rest '_'; never "", "." or "..".</summary>
    internal static string Safe(string part)
    {
        var builder = new StringBuilder(part.Length);
        foreach (var c in part)
        {
            builder.Append(char.IsLetterOrDigit(c) || c is '-' or '_' or '.' or '@' or '+' ? c : '_');
        }

        var safe = builder.ToString();
        return safe.Length == 0 ? "_" : safe[0] == '.' ? "_" + safe[1..] : safe;
    }
}
